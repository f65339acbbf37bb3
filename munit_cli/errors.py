"""The one error type library code raises; only `cli.py` turns it into a message and an exit code."""


class MunitError(Exception):
    """A failure the user can act on. `exit_code` follows sysexits-like conventions."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MunitError):
    """Bad arguments or configuration (exit 2, like a shell usage error)."""

    exit_code = 2


class PartialFailure(MunitError):
    """Some inputs failed while the others were processed (exit 3, reported after the work is done)."""

    exit_code = 3


class Interrupted(MunitError):
    """Stopped by a signal after saving state: 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, message: str, signum: int):
        super().__init__(message, exit_code=128 + signum)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type's name), for a one-line error that
    quotes what a library said without its tracebacks or multi-line dumps."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
