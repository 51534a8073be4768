"""Every error shoprank raises on purpose, in one leaf module.

Each says what went wrong in words a user can act on; callers catch these by type (the command
line maps them to exit codes) and let anything else surface as the bug it is.
"""
from __future__ import annotations


class DataError(ValueError):
    """A judgments file or column mapping the user must fix: a missing or unreadable file, an
    unknown file type, columns not in the file, a label that does not fit its kind, no rows, a bad
    COLUMNS spec. One line that names the file, row or part to fix; the command line prints it as
    `shoprank COMMAND: message` and exits 2, no traceback."""


class DataFileMissing(DataError, FileNotFoundError):
    """The judgments file named by DATA= / --data (or a model card) does not exist."""


class RequestError(ValueError):
    """A bad rank request: reported to the client as INVALID_ARG, and the server keeps serving."""


class RankError(RuntimeError):
    """The server refused or failed a request (client side); the message is the server's, the
    status its code as tritonclient reports it ("StatusCode.UNAVAILABLE" over gRPC, "503" over
    HTTP; None when unknown)."""

    RETRYABLE = frozenset({"StatusCode.UNAVAILABLE", "503", "429"})

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Overloaded or briefly unavailable: the same request may succeed after a pause."""
        return self.status in self.RETRYABLE


class BuildError(RuntimeError):
    """A build output (ONNX, INT8, QDQ, plan, student, update) failed its check; nothing was written."""


class GateRefused(BuildError):
    """The quality gate refused a candidate: it ranks validation queries worse than the margin
    allows, or its quality could not be shown (an undefined NDCG). `verdict` holds the numbers."""

    def __init__(self, message: str, verdict: dict | None = None):
        super().__init__(message)
        self.verdict = verdict or {}


class AccuracyMiss(BuildError):
    """An engine's logits are outside the stated tolerance on real inputs (polygraphy)."""


class TensorRTUnavailable(RuntimeError):
    """No TensorRT or no NVIDIA GPU here: the message names what is missing and how to get it."""


class InfinityUnavailable(RuntimeError):
    """Why the Infinity baseline could not run in the benchmark (goes into the report verbatim)."""
