"""The one exception type for problems a user can cause and fix."""


class SGEVizError(Exception):
    """A user-facing error: the message says what was wrong and what to do.

    The UI shows it, the CLI prints it and exits non-zero. Anything else that
    escapes is a bug in this project.
    """


class UsageError(SGEVizError):
    """A problem with the command line itself (the CLI exits with status 2)."""
