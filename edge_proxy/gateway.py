"""The Python gateway: the public REST API over HTTP/1.1, transcoded to the services' gRPC the
way Envoy's grpc_json_transcoder does it (preserve_proto_field_names, convert_grpc_status,
stream_sse_style_delimited), with the guard (authentication and rate limits) in front.

Every request: request ID -> route -> guard -> body (size limit) -> request message -> upstream
call with a deadline, the request ID and the caller the guard decided -> JSON, SSE or a
google.rpc.Status JSON error. One log line per request."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import cast

import grpc
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chirp_core.rpc import REQUEST_ID_HEADER, USER_ID_HEADER, request_id_var
from chirp_core.settings import Settings
from edge_proxy.guard import Guard, GuardDecision, GuardRequest
from edge_proxy.http_status import code_number, http_status
from edge_proxy.media_local import LocalMediaEndpoint
from edge_proxy.routes import NoRoute, Route, RouteMatch, Router, WrongMethod, build_routes, chirp_services
from edge_proxy.transcoder import (
    ERROR_DOMAIN,
    TranscodeError,
    build_request,
    dumps,
    make_status,
    response_json,
    status_from_error,
    status_from_trailers,
    status_json,
    to_json,
)

log = logging.getLogger("chirp.gateway")

HEALTH_PATH = "/healthz"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
# Which upstream serves each service; a service with http rules and no entry here fails start-up.
UPSTREAM_OF_SERVICE = {
    "chirp.users.v1.UserService": "graph",
    "chirp.graph.v1.GraphService": "graph",
    "chirp.tweets.v1.TweetService": "tweets",
    "chirp.timeline.v1.TimelineService": "timeline",
}
HEALTH_TIMEOUT_SECONDS = 2.0

UnaryCallable = grpc.aio.UnaryUnaryMultiCallable[Message, Message]
StreamCallable = grpc.aio.UnaryStreamMultiCallable[Message, Message]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


@dataclass
class _Outcome:
    """What the log line says about a request besides its method and path."""

    status: int = 0
    rpc: str = ""
    user_id: int | None = None
    note: str = ""


class Gateway:
    """The request handler and what it holds: the router, the upstream channels, the guard."""

    def __init__(
        self,
        settings: Settings,
        guard: Guard | None,
        routes: Sequence[Route] | None = None,
        media: LocalMediaEndpoint | None = None,
    ) -> None:
        self.settings = settings
        self.guard = guard
        # /media/: the local media store's uploads and downloads, outside the JSON routes.
        self.media = media
        self.router = Router(build_routes(chirp_services()) if routes is None else routes)
        self.upstreams = {
            "graph": settings.graph_target,
            "tweets": settings.tweets_target,
            "timeline": settings.timeline_target,
        }
        if guard is not None:
            self.upstreams["auth"] = settings.auth_target
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unary: dict[str, UnaryCallable] = {}
        self._stream: dict[str, StreamCallable] = {}
        for route in self.router.routes:
            upstream = UPSTREAM_OF_SERVICE.get(route.service)
            if upstream is None:
                raise ValueError(f"no upstream for {route.service} ({route.verb} {route.template.text})")
            channel = self._channel(self.upstreams[upstream])
            decode = route.response_type.FromString
            if route.server_streaming:
                self._stream[route.rpc] = channel.unary_stream(
                    route.rpc, request_serializer=_serialize, response_deserializer=decode
                )
            else:
                self._unary[route.rpc] = channel.unary_unary(
                    route.rpc, request_serializer=_serialize, response_deserializer=decode
                )
        self._live_streams: set[grpc.aio.UnaryStreamCall[Message, Message]] = set()
        self._stopping = False

    @property
    def live_streams(self) -> Set[grpc.aio.UnaryStreamCall[Message, Message]]:
        """The upstream calls of the event streams open now."""
        return self._live_streams

    def _channel(self, target: str) -> grpc.aio.Channel:
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(
                target, options=[("grpc.keepalive_time_ms", 30_000), ("grpc.enable_retries", 1)]
            )
        return self._channels[target]

    async def close(self) -> None:
        """End the live streams (they never finish by themselves), then close the channels."""
        self._stopping = True
        for call in list(self._live_streams):
            call.cancel()

    async def close_channels(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)

    # The handler.

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        request_id_var.set(request_id)
        outcome = _Outcome()
        try:
            try:
                response = await self._dispatch(request, request_id, outcome)
            except Exception:
                log.exception("%s %s failed [%s]", request.method, request.rel_url.raw_path, request_id)
                status = make_status(code_number(grpc.StatusCode.INTERNAL), "internal error")
                response = self._error_response(500, status, request_id)
            outcome.status = response.status
            return response
        except asyncio.CancelledError:
            outcome.status, outcome.note = 499, "client went away"
            raise
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s -> %d %.1fms request_id=%s rpc=%s user=%s%s",
                request.method,
                request.rel_url.raw_path,
                outcome.status,
                elapsed,
                request_id,
                outcome.rpc or "-",
                outcome.user_id if outcome.user_id is not None else "-",
                f" ({outcome.note})" if outcome.note else "",
            )

    async def _dispatch(
        self, request: web.BaseRequest, request_id: str, outcome: _Outcome
    ) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        match: RouteMatch | None = None
        miss: TranscodeError | None = None
        media = self.media if self.media is not None and self.media.handles(raw_path) else None
        if media is not None:
            outcome.note = "media"
        elif raw_path == HEALTH_PATH:
            if request.method != "GET":
                miss = _wrong_method(("GET",), raw_path, request.method)
        else:
            try:
                match = self.router.match(request.method, raw_path)
                outcome.rpc = match.route.rpc
            except NoRoute:
                miss = TranscodeError(
                    404,
                    grpc.StatusCode.NOT_FOUND,
                    f"no route for {request.method} {raw_path}",
                    reason="ROUTE_NOT_FOUND",
                )
            except WrongMethod as wrong:
                miss = _wrong_method(wrong.allowed, raw_path, request.method)

        user_id: int | None = None
        extra_headers: Mapping[str, str] = {}
        if self.guard is not None:
            decision = await self._check(request, outcome.rpc, request_id)
            if not decision.allowed:
                outcome.note = f"denied: {decision.reason}"
                return self._denied(decision, request_id)
            user_id = decision.user_id
            extra_headers = {k: v for k, v in decision.headers.items() if k.lower() != USER_ID_HEADER}
        outcome.user_id = user_id
        if media is not None:
            return await media.handle(request, request_id)

        try:
            if miss is not None:
                raise miss
            if match is None:
                return await self._health(request_id)
            body = await self._read_body(request, match.route)
            message = build_request(match.route, match.bindings, list(request.rel_url.query.items()), body)
        except TranscodeError as error:
            outcome.note = error.reason
            return self._error_response(error.http_status, error.status(), request_id, error.headers)

        metadata: list[tuple[str, str]] = [(REQUEST_ID_HEADER, request_id)]
        if user_id is not None:
            metadata.append((USER_ID_HEADER, str(user_id)))
        if match.route.server_streaming:
            return await self._call_stream(request, match.route, message, metadata, request_id, outcome)
        return await self._call_unary(match.route, message, metadata, request_id, extra_headers, outcome)

    async def _check(self, request: web.BaseRequest, rpc: str, request_id: str) -> GuardDecision:
        assert self.guard is not None
        headers = {name.lower(): value for name, value in request.headers.items()}
        headers[REQUEST_ID_HEADER] = request_id
        guard_request = GuardRequest(
            # The path with its query string, as Envoy's ext_authz sends :path.
            method=request.method,
            path=request.raw_path,
            headers=headers,
            remote_ip=request.remote or "",
            rpc=rpc,
        )
        return await self.guard.check(guard_request)

    async def _read_body(self, request: web.BaseRequest, route: Route) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        if not route.body:
            return b""  # ignored, as the transcoder does for a rule without a body
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    # Upstream calls.

    async def _call_unary(
        self,
        route: Route,
        message: Message,
        metadata: Sequence[tuple[str, str]],
        request_id: str,
        extra_headers: Mapping[str, str],
        outcome: _Outcome,
    ) -> web.StreamResponse:
        try:
            answer = await self._unary[route.rpc](
                message, timeout=self.settings.upstream_timeout_seconds, metadata=tuple(metadata)
            )
        except grpc.aio.AioRpcError as error:
            outcome.note = f"{error.code().name}: {error.details()}"
            status = status_from_error(error)
            return self._error_response(http_status(error.code()), status, request_id, extra_headers)
        return self._response(200, response_json(route, answer), request_id, extra_headers)

    async def _call_stream(
        self,
        request: web.BaseRequest,
        route: Route,
        message: Message,
        metadata: Sequence[tuple[str, str]],
        request_id: str,
        outcome: _Outcome,
    ) -> web.StreamResponse:
        """Server-sent events, one `data: <json>` per message. The HTTP status waits for the
        upstream's headers, so a call refused at once (403, 401, ...) is a JSON error, as in Envoy;
        an error after that ends the event stream."""
        if self._stopping:
            status = make_status(code_number(grpc.StatusCode.UNAVAILABLE), "the gateway is shutting down")
            return self._error_response(503, status, request_id)
        call = self._stream[route.rpc](message, metadata=tuple(metadata))
        self._live_streams.add(call)
        try:
            failed = await self._stream_start_error(call)
            if failed is not None:
                code, status = failed
                outcome.note = f"{code.name}: {status.message}"
                return self._error_response(http_status(code), status, request_id)
            response = web.StreamResponse(
                status=200,
                headers={
                    "Content-Type": EVENT_STREAM,
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                    REQUEST_ID_HEADER: request_id,
                },
            )
            await response.prepare(request)
            try:
                async for event in call:
                    await response.write(b"data: " + dumps(to_json(event)) + b"\n\n")
            except grpc.aio.AioRpcError as error:
                outcome.note = f"stream ended: {error.code().name}: {error.details()}"
            except ConnectionResetError:  # the client left between two events
                outcome.note = "stream ended: client went away"
                return response
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not self._stopping or (current is not None and current.cancelling()):
                    raise
                outcome.note = "stream ended: gateway stopping"
            await response.write_eof()
            return response
        finally:
            self._live_streams.discard(call)
            call.cancel()

    async def _stream_start_error(
        self, call: grpc.aio.UnaryStreamCall[Message, Message]
    ) -> tuple[grpc.StatusCode, status_pb2.Status] | None:
        try:
            await asyncio.wait_for(call.initial_metadata(), self.settings.upstream_timeout_seconds)
        except TimeoutError:
            return grpc.StatusCode.DEADLINE_EXCEEDED, make_status(
                code_number(grpc.StatusCode.DEADLINE_EXCEEDED), "the upstream did not answer in time"
            )
        # A call refused at once ends with trailers only: its status arrives with the headers.
        for _ in range(3):
            if call.done():
                break
            await asyncio.sleep(0)
        if not call.done():
            return None
        code = await call.code()
        if code == grpc.StatusCode.OK:
            return None
        trailers = cast(Sequence[tuple[str, str | bytes]], await call.trailing_metadata() or ())
        return code, status_from_trailers(code, await call.details() or "", trailers)

    # Health.

    async def _health(self, request_id: str) -> web.StreamResponse:
        names = list(self.upstreams)
        states = await asyncio.gather(*(self._health_of(self.upstreams[name]) for name in names))
        upstreams = dict(zip(names, states, strict=True))
        if all(state == "SERVING" for state in states):
            return self._response(200, dumps({"status": "SERVING"}), request_id)
        down = [name for name, state in upstreams.items() if state != "SERVING"]
        # Shaped like every other error answer (a google.rpc.Status), with the health fields added.
        document = {
            "code": code_number(grpc.StatusCode.UNAVAILABLE),
            "message": f"not serving: {', '.join(down)}",
            "status": "NOT_SERVING",
            "not_serving": down,
            "upstreams": upstreams,
        }
        return self._response(503, dumps(document), request_id)

    async def _health_of(self, target: str) -> str:
        stub = health_pb2_grpc.HealthStub(self._channel(target))
        timeout = min(HEALTH_TIMEOUT_SECONDS, self.settings.upstream_timeout_seconds)
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    # Answers.

    def _response(
        self, status: int, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        response = web.Response(status=status, body=body, content_type=JSON)
        response.headers[REQUEST_ID_HEADER] = request_id
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _error_response(
        self,
        status: int,
        rpc_status: status_pb2.Status,
        request_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        return self._response(status, status_json(rpc_status), request_id, headers)

    def _denied(self, decision: GuardDecision, request_id: str) -> web.Response:
        info = error_details_pb2.ErrorInfo(reason=decision.reason, domain=ERROR_DOMAIN)
        status = make_status(decision.grpc_code, decision.message, [info])
        return self._error_response(decision.http_status, status, request_id, decision.headers)


def _wrong_method(allowed: Sequence[str], raw_path: str, method: str) -> TranscodeError:
    return TranscodeError(
        405,
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not allowed on {raw_path}; allowed: {', '.join(allowed)}",
        reason="METHOD_NOT_ALLOWED",
        headers={"Allow": ", ".join(allowed)},
    )


def _too_large(limit: int) -> TranscodeError:
    return TranscodeError(
        413,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the request body is larger than {limit} bytes",
        reason="BODY_TOO_LARGE",
    )


@dataclass
class RunningGateway:
    """A started gateway. `port` is the bound port (useful with http_port 0)."""

    gateway: Gateway
    runner: web.ServerRunner
    host: str
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, end the live streams, let in-flight requests finish (up to the
        shutdown grace), then close the upstream channels."""
        if self._stopped:
            return
        self._stopped = True
        await self.gateway.close()
        await self.runner.cleanup()
        await self.gateway.close_channels()
        log.info("gateway stopped")


async def start(settings: Settings, guard: Guard | None) -> RunningGateway:
    """Bind settings.host:settings.http_port (0 picks a free port) and serve.

    `guard` None turns authentication and rate limiting off (transcoding tests only)."""
    media = await asyncio.to_thread(LocalMediaEndpoint.from_settings, settings)
    gateway = Gateway(settings, guard, media=media)
    server = web.Server(gateway.handle, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.http_port)
        await site.start()
        port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        await gateway.close_channels()
        raise
    log.info("gateway serving http://%s:%d (%d routes)", settings.host, port, len(gateway.router.routes))
    return RunningGateway(gateway, runner, settings.host, port)
