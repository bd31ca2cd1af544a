"""Server bootstrap: one function builds a gRPC server with health, reflection and our interceptor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chirp_core import rpc
from chirp_core.metrics import Metrics
from chirp_core.rpc import ServerInterceptor

log = logging.getLogger("chirp.server")
CLOSE_TIMEOUT_SECONDS = 5.0
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]  # not in grpc-stubs


@dataclass
class RunningServer:
    """A started gRPC server and what it serves. `port` is the bound port (useful with port 0)."""

    name: str
    server: grpc.aio.Server
    port: int
    health: Any  # AsyncHealthServicer
    service_names: Sequence[str]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The metrics the server's service records into (shared with other services in one process).
    metrics: Metrics | None = None

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish for `grace` seconds, then close resources."""
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for close in reversed(self.on_stop):
            # A shutdown never hangs: a step stuck on a dead peer is abandoned after a bound.
            try:
                await asyncio.wait_for(close(), timeout=grace + CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning(
                    "%s: a shutdown step took over %.1fs; moving on", self.name, grace + CLOSE_TIMEOUT_SECONDS
                )
        log.info("%s stopped", self.name)


def accepted_pings() -> list[tuple[str, int]]:
    """Our channels ping every KEEPALIVE_TIME_MS while a call is open (chirp_core.rpc), and the
    health checking of a balanced channel keeps a Watch call open with no data on it. A gRPC
    server accepts a data-less ping every 5 minutes by default and answers more with GOAWAY
    (too_many_pings), failing the calls on that connection; ours accept our channels' pings."""
    # The channel argument's name differs from its C macro, GRPC_ARG_HTTP2_MIN_RECV_PING_...
    return [("grpc.http2.min_ping_interval_without_data_ms", rpc.KEEPALIVE_TIME_MS // 2)]


async def start_server(
    name: str,
    address: str,
    register: Callable[[grpc.aio.Server], Sequence[str]],
) -> RunningServer:
    """Build, bind and start a server. `register` adds the servicers and returns their full names.
    The port is this server's alone: a port another process holds fails here, naming it."""
    server = grpc.aio.server(
        interceptors=[ServerInterceptor()], options=[("grpc.so_reuseport", 0), *accepted_pings()]
    )
    service_names = list(register(server))
    health_servicer = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises where older versions returned 0
        port = 0
    if port == 0:
        raise OSError(
            f"{name}: cannot listen on {address}: the port is taken (another process listens on it)"
        )
    await server.start()
    for service in ("", *service_names):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving %s on port %d", name, ", ".join(service_names), port)
    return RunningServer(name, server, port, health_servicer, service_names)
