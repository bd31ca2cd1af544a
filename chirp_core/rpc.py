"""gRPC plumbing shared by every service: the caller's identity, request context,
the one place domain errors become gRPC status, and deadline propagation downstream."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from chirp_core.errors import ChirpError, InvalidArgument, Unauthenticated

USER_ID_HEADER = "x-chirp-user-id"
REQUEST_ID_HEADER = "x-request-id"
ERROR_DOMAIN = "chirp.dev"

log = logging.getLogger("chirp.rpc")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Absolute time.monotonic() by which the current incoming RPC must be answered; None = no deadline.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


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
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, cast(Any, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _enter(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    request_id = "-"
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            request_id = value.decode() if isinstance(value, bytes) else value
    request_id_var.set(request_id if request_id != "-" else uuid.uuid4().hex[:16])
    remaining = context.time_remaining()
    deadline_var.set(None if remaining is None else time.monotonic() + remaining)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> None:
    if isinstance(exc, ChirpError):
        log.info("%s -> %s %s", method, exc.code, exc.message)
        status = to_status(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, grpc.aio.AioRpcError):
        # A downstream service failed: pass its code on, so an outage reads as UNAVAILABLE.
        log.warning("%s -> downstream %s: %s", method, exc.code().name, exc.details())
        await context.abort(exc.code(), exc.details() or "", cast(Any, exc.trailing_metadata() or ()))
    if isinstance(exc, NotImplementedError):  # what the generated base servicers raise
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    log.exception("%s -> INTERNAL", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _wrap_unary(method: str, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        _enter(context)
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return handler


def _wrap_stream(
    method: str, behaviour: Callable[..., AsyncIterator[Any]]
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        _enter(context)
        try:
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


def downstream_channel(target: str, default_timeout: float) -> grpc.aio.Channel:
    """A channel to another service that passes on the caller's deadline and request ID."""
    return grpc.aio.insecure_channel(
        target,
        interceptors=cast(Any, [_DeadlineUnary(default_timeout), _DeadlineStream(default_timeout)]),
        options=[("grpc.enable_retries", 1), ("grpc.keepalive_time_ms", 30_000)],
    )


class RequestIdLogFilter(logging.Filter):
    """Puts the current request ID on every log record as %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
