"""gRPC plumbing shared by every service: the caller's identity, request context,
the one place domain errors become gRPC status (and are logged), and deadline propagation
downstream.

Logging: a client's mistake (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, ...) is logged once,
at INFO and with no traceback, by the service the client called. Calls between services log such
errors at DEBUG on both sides (the caller handles them or passes them on). An outage is a WARNING;
only a server fault (an unexpected exception) is logged at ERROR, with its traceback."""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from chirp_core.errors import ChirpError, InvalidArgument, Unauthenticated
from chirp_core.settings import target_addresses

USER_ID_HEADER = "x-chirp-user-id"
# The session of the caller's access token (its `sid` claim), set by the gateway like USER_ID_HEADER.
SESSION_ID_HEADER = "x-chirp-session-id"
REQUEST_ID_HEADER = "x-request-id"
# Set on every call one service makes to another (downstream_channel): a client error such a call
# gets was the caller's to handle or report, so the callee logs it at DEBUG only.
INTERNAL_CALL_HEADER = "x-chirp-internal-call"
# Set on a call one service makes to another while it serves a user (on_behalf_of_var): the callee
# then reads as that user would, seeing their own writes (chirp_core.write_marks). The gateway
# strips it from clients, like USER_ID_HEADER.
ON_BEHALF_OF_HEADER = "x-chirp-on-behalf-of"
ERROR_DOMAIN = "chirp.dev"

log = logging.getLogger("chirp.rpc")

# Codes that say the caller asked for something wrong, not that a server failed.
CLIENT_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Absolute time.monotonic() by which the current incoming RPC must be answered; None = no deadline.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)
# The user the current RPC serves: its authenticated caller, or the user a calling service named.
on_behalf_of_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("on_behalf_of", default=None)


def caller_id(context: grpc.aio.ServicerContext[Any, Any]) -> int | None:
    """The authenticated user the gateway named in x-chirp-user-id, or None."""
    for key, value in context.invocation_metadata() or ():
        if key == USER_ID_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            try:
                return int(text)
            except ValueError:
                raise Unauthenticated(f"{USER_ID_HEADER} is not a user ID") from None
    return None


def caller_session_id(context: grpc.aio.ServicerContext[Any, Any]) -> int | None:
    """The session the gateway named in x-chirp-session-id, or None."""
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_ID_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            try:
                return int(text)
            except ValueError:
                raise Unauthenticated(f"{SESSION_ID_HEADER} is not a session ID") from None
    return None


def to_status(error: ChirpError) -> grpc.Status:
    """The google.rpc.Status for a domain error: its code, message and one ErrorInfo."""
    details = [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(code=getattr(code_pb2, error.code), message=error.message, details=packed)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def status_body(code: int, message: str, reason: str, metadata: Mapping[str, str] | None = None) -> str:
    """A google.rpc.Status as compact JSON with one ErrorInfo: the error body of the HTTP servers
    Envoy calls (the rate-limit service, the local media store)."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})))
    status = status_pb2.Status(code=code, message=message, details=[info])
    body: dict[str, Any] = json_format.MessageToDict(status, preserving_proto_field_name=True)
    body.setdefault("code", code)
    return json.dumps(body, separators=(",", ":"))


if TYPE_CHECKING:
    _UnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _StreamClientInterceptor = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _UnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    _StreamClientInterceptor = grpc.aio.UnaryStreamClientInterceptor
    _Handler = grpc.RpcMethodHandler
    _ServerInterceptor = grpc.aio.ServerInterceptor


class ServerInterceptor(_ServerInterceptor):
    """Wraps every handler: sets the request context, logs, and maps errors to status."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        deserializer = _Lenient(handler.request_deserializer) if handler.request_deserializer else None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, cast(Any, handler.unary_stream)),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class Undecodable:
    """A request whose bytes are not its message (e.g. a string field that is not UTF-8, which
    Envoy's transcoder passes on from a query string): the handler answers INVALID_ARGUMENT instead
    of gRPC answering UNKNOWN."""

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


class _Lenient:
    """A request deserializer that returns Undecodable where the original raises DecodeError."""

    def __init__(self, deserializer: Callable[[bytes], Any]) -> None:
        self._deserializer = deserializer
        self._descriptor: Descriptor | None = getattr(
            getattr(deserializer, "__self__", None), "DESCRIPTOR", None
        )

    def __call__(self, data: bytes) -> Any:
        try:
            return self._deserializer(data)
        except DecodeError as exc:
            field = _non_utf8_field(self._descriptor, data) if self._descriptor is not None else None
            if field is not None:
                return Undecodable(InvalidArgument(field, "is not valid UTF-8"))
            return Undecodable(InvalidArgument("request", f"cannot be decoded: {exc}"))


def _non_utf8_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field in `data` (wire format) that is not UTF-8, or None."""
    position = 0
    try:
        while position < len(data):
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, position = _varint(data, position)
            elif wire_type in (1, 5):
                position += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, position = _varint(data, position)
                chunk, position = data[position : position + length], position + length
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode()
                    except UnicodeDecodeError:
                        return prefix + field.name
                elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                    inner = _non_utf8_field(field.message_type, chunk, f"{prefix}{field.name}.")
                    if inner is not None:
                        return inner
            else:
                return None
    except IndexError:
        return None
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _enter(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    request_id = "-"
    user: int | None = None
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            request_id = value.decode() if isinstance(value, bytes) else value
        elif key in (USER_ID_HEADER, ON_BEHALF_OF_HEADER) and user is None:
            text = value.decode() if isinstance(value, bytes) else value
            user = int(text) if text.isdigit() else None
    request_id_var.set(request_id if request_id != "-" else uuid.uuid4().hex[:16])
    on_behalf_of_var.set(user)
    remaining = context.time_remaining()
    deadline_var.set(None if remaining is None else time.monotonic() + remaining)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> None:
    if isinstance(exc, ChirpError):
        status = to_status(exc)
        level = logging.WARNING
        if status.code in CLIENT_ERROR_CODES:
            level = logging.DEBUG if _is_internal(context) else logging.INFO
        log.log(level, "%s -> %s %s", method, exc.code, exc.message)
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, grpc.aio.AioRpcError):
        # A downstream service failed: pass its code on, so an outage reads as UNAVAILABLE. A
        # client's mistake was logged by the service that found it.
        level = logging.DEBUG if exc.code() in CLIENT_ERROR_CODES else logging.WARNING
        log.log(level, "%s -> downstream %s: %s", method, exc.code().name, exc.details())
        await context.abort(exc.code(), exc.details() or "", cast(Any, exc.trailing_metadata() or ()))
    if isinstance(exc, NotImplementedError):  # what the generated base servicers raise
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    log.exception("%s -> INTERNAL", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _is_internal(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    return any(key == INTERNAL_CALL_HEADER for key, _ in context.invocation_metadata() or ())


def _wrap_unary(method: str, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        _enter(context)
        try:
            if isinstance(request, Undecodable):
                raise request.error
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return handler


def _wrap_stream(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behaviour):
        # A handler that writes its responses itself (context.write), as grpc.health.v1's Watch
        # does: what the channels' health checking calls.
        return _wrap_unary(method, behaviour)

    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        _enter(context)
        try:
            if isinstance(request, Undecodable):
                raise request.error
            async for response in behaviour(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return handler


def _outgoing(details: grpc.aio.ClientCallDetails, default_timeout: float) -> grpc.aio.ClientCallDetails:
    timeout = details.timeout if details.timeout is not None else default_timeout
    deadline = deadline_var.get()
    if deadline is not None:
        timeout = max(0.0, min(timeout, deadline - time.monotonic()))
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if REQUEST_ID_HEADER not in metadata:
        metadata.add(REQUEST_ID_HEADER, request_id_var.get())
    if INTERNAL_CALL_HEADER not in metadata:
        metadata.add(INTERNAL_CALL_HEADER, "1")
    user = on_behalf_of_var.get()
    if user is not None and ON_BEHALF_OF_HEADER not in metadata:
        metadata.add(ON_BEHALF_OF_HEADER, str(user))
    return grpc.aio.ClientCallDetails(
        details.method, timeout, metadata, details.credentials, details.wait_for_ready
    )


class _DeadlineUnary(_UnaryClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._default = default_timeout

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_outgoing(details, self._default), request)


class _DeadlineStream(_StreamClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._default = default_timeout

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_outgoing(details, self._default), request)


# Calls spread over every address of a target (several listed, or a DNS name's records), round
# robin among those whose grpc.health.v1 Health/Watch says SERVING: a server that stops or reports
# NOT_SERVING (as ours do while they shut down) leaves the rotation, and comes back when it serves.
BALANCED_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)


def channel_target(target: str) -> str:
    """gRPC's name for a target setting: `host:port` as it is (DNS resolves it, every record an
    address), several IP addresses `a:p1,b:p2` as `ipv4:a:p1,b:p2` (or ipv6:)."""
    addresses = target_addresses(target)
    if len(addresses) == 1:
        return target.strip()
    if all(":" in host for host, _ in addresses):
        return "ipv6:" + ",".join(f"[{host}]:{port}" for host, port in addresses)
    return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)


# How often our channels ping a server while a call is open, to find a dead connection.
KEEPALIVE_TIME_MS = 30_000


def downstream_channel(target: str, default_timeout: float) -> grpc.aio.Channel:
    """A channel to another service (one address or several, see channel_target) that passes on
    the caller's deadline and request ID."""
    return grpc.aio.insecure_channel(
        channel_target(target),
        interceptors=cast(Any, [_DeadlineUnary(default_timeout), _DeadlineStream(default_timeout)]),
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.service_config", BALANCED_SERVICE_CONFIG),
        ],
    )


class RequestIdLogFilter(logging.Filter):
    """Puts the current request ID on every log record as %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
