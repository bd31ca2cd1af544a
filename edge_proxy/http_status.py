"""gRPC status code -> HTTP status, the table Envoy's transcoder uses with convert_grpc_status
(envoy/source/common/grpc/status.cc, Utility::grpcToHttpStatus)."""

from __future__ import annotations

import grpc

_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def http_status(code: grpc.StatusCode | int) -> int:
    """The HTTP status for a gRPC code (a StatusCode or its number); unknown codes are 500."""
    if isinstance(code, int):
        found = _BY_NUMBER.get(code)
        if found is None:
            return 500
        code = found
    return _BY_CODE.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    """The numeric value of a StatusCode, as google.rpc.Status.code carries it."""
    number: int = code.value[0]
    return number
