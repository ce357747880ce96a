"""The one error type the CLI turns into a single clear line and a non-zero exit.

Raise :class:`QlstmError` for anything the *user* can fix (bad input file, bad option, corrupt
checkpoint, unknown part). Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class QlstmError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    Parameters
    ----------
    message:
        What is wrong, naming the file / event / option concerned.
    exit_code:
        Process exit status used by the CLI (2 = bad usage or input, 3 = missing tool).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
