"""One error type per failure a person can act on.

Every error carries a stable `code` (for JSON and logs), the process `exit_code` the CLI uses,
and an optional `hint` saying what to do. The CLI prints `str(error)` and the hint on one or two
lines, never a traceback.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_RESTORED = 3


class TorchdoctorError(Exception):
    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_ATTENTION

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class BadInputError(TorchdoctorError):
    """The user gave us something we cannot use: exit 2."""

    code = "bad-input"
    exit_code = EXIT_BAD_INPUT


class HardwareFileError(BadInputError):
    code = "bad-hardware-file"


class NotAnEnvironmentError(BadInputError):
    code = "not-an-environment"


class UnreadableError(BadInputError):
    code = "unreadable"


class ConfigError(BadInputError):
    code = "bad-config"


class KnowledgeError(BadInputError):
    """The knowledge data (ours or the user's override file) is malformed."""

    code = "bad-knowledge"


class ProbeError(TorchdoctorError):
    code = "probe-failed"


class SubprocessTimeoutError(TorchdoctorError):
    code = "timeout"


class InterpreterError(ProbeError):
    """An environment's own python could not tell us what it is: it is missing, hung, crashed, or
    printed something else. The same error, code and exit status from every command that runs it."""

    code = "interpreter-failed"
