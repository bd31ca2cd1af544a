"""A small HTTP server beside the gRPC ones (the JWKS, the local media store): one aiohttp
low-level handler on host:port, started and stopped the same way everywhere."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass
class HttpServer:
    """A started server and the port it is bound to; stop() lets in-flight requests finish."""

    runner: web.ServerRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve_http(handler: Handler, host: str, port: int) -> HttpServer:
    """Serve `handler` on host:port (0 picks a free port)."""
    runner = web.ServerRunner(web.Server(handler), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, int(runner.addresses[0][1]))
