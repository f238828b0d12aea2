"""The one exception type that means "the user can fix this": the CLI prints it as a one-line error."""


class DogbreedError(Exception):
    """A user-facing problem (bad path, unknown id, unreadable store...). Its message is the whole story."""

    exit_code = 1
