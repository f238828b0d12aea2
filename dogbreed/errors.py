"""The one exception type that means "the user can fix this": the CLI prints it as a one-line error."""


class DogbreedError(Exception):
    """A user-facing problem (bad path, unknown id, unreadable store...). Its message is the whole story."""

    exit_code = 1


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters (libraries raise multi-line essays)."""
    text = " ".join(str(exc).split())
    return (text[:limit] + "...") if len(text) > limit else text or type(exc).__name__
