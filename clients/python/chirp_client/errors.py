"""Typed exceptions for the API's errors.

The API answers an error with a `google.rpc.Status` JSON body
(`{"code": 5, "message": "...", "details": [{"@type": ".../google.rpc.ErrorInfo", ...}]}`)
and the HTTP status Envoy's transcoder gives for that gRPC code. `error_from_response`
builds the matching exception; when the body is not a Status (a proxy's HTML page, say),
the gRPC code is inferred from the HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

# The canonical gRPC status codes (google.rpc.Code), by number.
GRPC_CODE_NAMES: Mapping[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
GRPC_CODES: Mapping[str, int] = {name: number for number, name in GRPC_CODE_NAMES.items()}

# The gRPC code assumed for an HTTP error whose body is not a Status: the inverse of
# Envoy's gRPC -> HTTP table, taking the most common code where several share a status.
_CODE_FOR_HTTP_STATUS: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


class ChirpError(Exception):
    """Base of every exception this package raises."""


class TransportError(ChirpError):
    """The server could not be reached, or the connection broke before an answer."""


class ChirpApiError(ChirpError):
    """The API answered with an error.

    `code` is the gRPC code's name ("NOT_FOUND"; by default the class's), `grpc_code` its
    number, `reason` the ErrorInfo reason ("TWEET_NOT_FOUND", or "" when the server gave
    none) and `metadata` the ErrorInfo metadata.
    """

    grpc_code_name: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        *,
        http_status: int,
        message: str,
        code: str | None = None,
        grpc_code: int | None = None,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        code = code or self.grpc_code_name
        super().__init__(f"{code} ({http_status}): {message}" if message else f"{code} ({http_status})")
        self.http_status = http_status
        self.code = code
        self.grpc_code = GRPC_CODES.get(code, 2) if grpc_code is None else grpc_code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(ChirpApiError):
    """A request field is wrong; `field` names it when the server said which."""

    grpc_code_name = "INVALID_ARGUMENT"

    @property
    def field(self) -> str | None:
        return self.metadata.get("field")


class Unauthenticated(ChirpApiError):
    """No token, or a token that is unknown or expired: log in again."""

    grpc_code_name = "UNAUTHENTICATED"


class PermissionDenied(ChirpApiError):
    grpc_code_name = "PERMISSION_DENIED"


class NotFound(ChirpApiError):
    grpc_code_name = "NOT_FOUND"


class AlreadyExists(ChirpApiError):
    grpc_code_name = "ALREADY_EXISTS"


class FailedPrecondition(ChirpApiError):
    grpc_code_name = "FAILED_PRECONDITION"


class RateLimited(ChirpApiError):
    """Over a rate limit. `retry_after` is the wait in seconds the server asked for, if any."""

    grpc_code_name = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        *,
        http_status: int,
        message: str,
        code: str | None = None,
        grpc_code: int | None = None,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            http_status=http_status,
            code=code,
            message=message,
            grpc_code=grpc_code,
            reason=reason,
            metadata=metadata,
        )
        self.retry_after = retry_after


class Unavailable(ChirpApiError):
    """A service behind the gateway is down; the call may succeed if retried later."""

    grpc_code_name = "UNAVAILABLE"


_CLASS_FOR_CODE: Mapping[str, type[ChirpApiError]] = {
    cls.grpc_code_name: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        RateLimited,
        Unavailable,
    )
}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_info(details: object) -> tuple[str, dict[str, str]]:
    if not isinstance(details, list):
        return "", {}
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _ERROR_INFO_TYPE:
            reason = detail.get("reason", "")
            metadata = detail.get("metadata", {})
            if not isinstance(metadata, dict):
                metadata = {}
            return str(reason), {str(k): str(v) for k, v in metadata.items()}
    return "", {}


def error_from_status(
    http_status: int, status: Mapping[str, Any], *, retry_after: str | None = None
) -> ChirpApiError:
    """The exception for a decoded `google.rpc.Status` JSON object."""
    number = status.get("code")
    if isinstance(number, int) and not isinstance(number, bool) and number in GRPC_CODE_NAMES:
        code = GRPC_CODE_NAMES[number]
    else:
        code = _CODE_FOR_HTTP_STATUS.get(http_status, "UNKNOWN")
        number = GRPC_CODES[code]
    message = status.get("message", "")
    reason, metadata = _error_info(status.get("details"))
    return _build(http_status, code, number, str(message), reason, metadata, retry_after)


def error_from_response(
    http_status: int, body: bytes, *, retry_after: str | None = None, http_reason: str = ""
) -> ChirpApiError:
    """The exception for an HTTP error response, from its status, body and Retry-After header."""
    try:
        decoded = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, dict) and ("code" in decoded or "message" in decoded):
        return error_from_status(http_status, decoded, retry_after=retry_after)
    code = _CODE_FOR_HTTP_STATUS.get(http_status, "UNKNOWN")
    text = body.decode("utf-8", "replace").strip()[:200] if body else ""
    return _build(http_status, code, GRPC_CODES[code], text or http_reason, "", {}, retry_after)


def _build(
    http_status: int,
    code: str,
    number: int,
    message: str,
    reason: str,
    metadata: Mapping[str, str],
    retry_after: str | None,
) -> ChirpApiError:
    if code == RateLimited.grpc_code_name:
        return RateLimited(
            http_status=http_status,
            code=code,
            message=message,
            grpc_code=number,
            reason=reason,
            metadata=metadata,
            retry_after=parse_retry_after(retry_after),
        )
    cls = _CLASS_FOR_CODE.get(code, ChirpApiError)
    return cls(
        http_status=http_status,
        code=code,
        message=message,
        grpc_code=number,
        reason=reason,
        metadata=metadata,
    )
