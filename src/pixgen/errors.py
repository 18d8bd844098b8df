"""The one exception tree of pixgen.

Every error a user can cause or meet is a ``PixgenError`` with a stable ``code`` (the job API's error codes) and
an HTTP ``status``. Each HTTP surface has one function that turns these into its own error body; the command line
prints ``pixgen: error (field): message`` and exits 2.

    PixgenError                     internal_error         500
    ├── InvalidRequest              invalid_request        400   bad input; ``field`` names it
    ├── Unauthorized                unauthorized           401
    ├── InsufficientCredits         insufficient_credits   402
    ├── Forbidden                   forbidden              403   a media link unsigned, forged or expired
    ├── NotFound                    not_found              404
    ├── ModelNotFound               model_not_found        404
    ├── MethodNotAllowed            invalid_request        405
    ├── Conflict                    conflict               409
    ├── PayloadTooLarge             payload_too_large      413
    ├── RangeNotSatisfiable         range_not_satisfiable  416   a byte range past the end; ``size`` of the file
    ├── RateLimited                 rate_limited           429   ``retry_after`` seconds
    ├── Cancelled                   cancelled              409   inside generation only, never an HTTP answer
    ├── ConfigError                 invalid_config         500   a setting that cannot be used; ``field`` names it
    ├── IllegalTransition           internal_error         500   a job move off the state machine (a bug)
    ├── ModelError                  internal_error         500   the model folder is missing or broken
    └── GenerationError             internal_error         500
        └── RankGroupBroken         internal_error         500   a rank of a multi-GPU group died or hung: the
                                                                  job goes back to the queue, the group restarts
"""

from __future__ import annotations

from collections.abc import Mapping


class PixgenError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(PixgenError):
    """Bad input: names the offending field in ``field``."""

    code = "invalid_request"
    status = 400

    def renamed(self, names: Mapping[str, str]) -> InvalidRequest:
        """This error with its field spelled as the caller spelled it (``names``: canonical → sent); itself if the
        field is not in ``names``. A message that starts with the old name starts with the new one."""
        field = self.field or ""
        new = names.get(field)
        if not new:
            return self
        message = new + self.message[len(field):] if self.message.startswith(field) else self.message
        return InvalidRequest(message, field=new)


class Unauthorized(PixgenError):
    code = "unauthorized"
    status = 401


class InsufficientCredits(PixgenError):
    code = "insufficient_credits"
    status = 402


class Forbidden(PixgenError):
    """A signed media link that is unsigned, forged or expired."""

    code = "forbidden"
    status = 403


class NotFound(PixgenError):
    code = "not_found"
    status = 404


class ModelNotFound(PixgenError):
    code = "model_not_found"
    status = 404


class MethodNotAllowed(PixgenError):
    code = "invalid_request"
    status = 405

    def __init__(self, message: str, *, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow  # the methods the path takes (the Allow header)


class Conflict(PixgenError):
    code = "conflict"
    status = 409


class PayloadTooLarge(PixgenError):
    code = "payload_too_large"
    status = 413


class RangeNotSatisfiable(PixgenError):
    """A ``Range`` header past the end of the file (answered with ``Content-Range: bytes */size``)."""

    code = "range_not_satisfiable"
    status = 416

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, field="Range")
        self.size = size


class RateLimited(PixgenError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(PixgenError):
    """Raised inside generation when the job was cancelled; never reaches a user as an HTTP error."""

    code = "cancelled"
    status = 409


class IllegalTransition(PixgenError):
    """A job move that the state machine (``jobs.states.TRANSITIONS``) does not have: a bug, never user input."""

    code = "internal_error"
    status = 500


class ModelError(PixgenError):
    """The model folder is missing, incomplete or failed to load."""

    code = "internal_error"
    status = 500


class ConfigError(PixgenError):
    """A setting (flag, ``PIXGEN_*`` variable) that cannot be used; ``field`` names the setting."""

    code = "invalid_config"
    status = 500


class GenerationError(PixgenError):
    code = "internal_error"
    status = 500


class RankGroupBroken(GenerationError):
    """A collective of a multi-rank group failed or timed out: not the job's fault, it runs again."""


def error_for_code(code: str | None, message: str) -> PixgenError:
    """The error a stored job's ``error_code`` stands for (a job that failed on bad input is still a 400)."""
    for cls in (InvalidRequest, Unauthorized, InsufficientCredits, NotFound, ModelNotFound, Conflict,
                PayloadTooLarge, RateLimited):
        if cls.code == code:
            return cls(message)
    return GenerationError(message)
