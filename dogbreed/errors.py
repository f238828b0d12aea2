"""The one exception type that means "the user can fix this": the CLI prints it as a one-line error."""


class DogbreedError(Exception):
    """A user-facing problem (bad path, unknown id, unreadable store...). Its message is the whole story."""

    exit_code = 1


class DogbreedWarning(UserWarning):
    """Something the user should know that does not stop the work (a damaged cache rebuilt, say); the CLI prints
    it as one 'Warning:' line."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters (libraries raise multi-line essays)."""
    text = " ".join(str(exc).split())
    return (text[:limit] + "...") if len(text) > limit else text or type(exc).__name__


class ModelChanged(DogbreedError):
    """A model file does not hold the bytes it was chosen (and its jobs queued) for: it was replaced between
    hashing and loading. Whatever would have run on it must not be recorded under the chosen model's identity."""

    def __init__(self, what: str, path: object, expected: str, found: str):
        self.path, self.expected, self.found = str(path), expected, found
        super().__init__(
            f"{what} {path} changed after it was chosen: it was sha256 {expected[:16]}... and now holds "
            f"{found[:16]}... (the file was replaced meanwhile); nothing ran on it"
        )
