"""A second graph service (the signer of access tokens) with settings of the test's own, and a
real Envoy in front of it and of the rest of the test stack: for tests that need a short
access-token lifetime or a key directory they may rotate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chirp_app.envoy_process import EnvoyProcess
from chirp_app.stack import Stack
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings
from graph_svc.server import start as start_graph
from tests.e2e.conftest import Edge, another_envoy
from tests.helpers.api import free_port


@dataclass
class TokenEdge:
    settings: Settings  # the second graph service's
    graph: RunningServer
    envoy: EnvoyProcess

    @property
    def url(self) -> str:
        return self.envoy.url


@asynccontextmanager
async def token_edge(
    stack: Stack, edge: Edge, run_dir: Path, *, jwks_cache_seconds: float = 1.0, **changes: Any
) -> AsyncIterator[TokenEdge]:
    """`changes` apply to the second graph service (access_token_ttl_seconds, jwt_key_dir, ...);
    its Envoy reads its JWKS every `jwks_cache_seconds`."""
    settings = stack.settings.with_changes(jwks_port=free_port(), **changes)
    graph = await start_graph(settings, stack.database_url, 0)
    try:
        async with another_envoy(
            edge,
            run_dir,
            graph_addr=f"{settings.host}:{graph.port}",
            jwks_addr=settings.jwks_target,
            jwks_cache_seconds=jwks_cache_seconds,
        ) as envoy:
            yield TokenEdge(settings, graph, envoy)
    finally:
        await graph.stop(0.5)
