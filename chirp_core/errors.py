"""Domain errors: plain exceptions carrying data, with no gRPC in sight.

One server interceptor (chirp_core.rpc) turns them into a gRPC status with a
google.rpc.ErrorInfo whose reason is `reason`; the gateway turns that status into HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ChirpError(Exception):
    """Base of every error a client may see. `code` is the canonical gRPC code's name."""

    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, reason: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(ChirpError):
    """A request field is wrong. `field` names it; the message says why."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str = "INVALID_FIELD") -> None:
        super().__init__(f"{field}: {message}", reason=reason, metadata={"field": field})
        self.field = field


class Unauthenticated(ChirpError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "authentication required", *, reason: str = "UNAUTHENTICATED") -> None:
        super().__init__(message, reason=reason)


class PermissionDenied(ChirpError):
    code = "PERMISSION_DENIED"

    def __init__(self, message: str, *, reason: str = "PERMISSION_DENIED") -> None:
        super().__init__(message, reason=reason)


class NotFound(ChirpError):
    code = "NOT_FOUND"

    def __init__(self, what: str, key: object, *, reason: str | None = None) -> None:
        super().__init__(
            f"{what} {key} not found",
            reason=reason or f"{what.upper().replace(' ', '_')}_NOT_FOUND",
            metadata={"id": str(key)},
        )


class AlreadyExists(ChirpError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(ChirpError):
    code = "FAILED_PRECONDITION"


class Unavailable(ChirpError):
    """A backing system is down; the call may succeed if retried."""

    code = "UNAVAILABLE"


def require_caller(caller_id: int | None, acting_for: int, field: str) -> None:
    """The caller (set by the gateway) may act only for themself."""
    if caller_id is None:
        raise Unauthenticated()
    if caller_id != acting_for:
        raise PermissionDenied(
            f"{field}: the caller may not act for user {acting_for}", reason="NOT_YOURSELF"
        )
