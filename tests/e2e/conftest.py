"""The edge in front of the in-process stack, started by the same composition root as `chirp up`
(chirp_app.edge): the rate-limit service, the local media store and a real Envoy checking the
stack's access tokens, on free ports, with the low limits of limits.yaml. Envoy's JSON access log
goes to a file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chirp_app.edge import RunningEdge, start_edge
from chirp_app.envoy_process import EnvoyProcess
from chirp_app.stack import Stack
from chirp_core.settings import Settings

LIMITS_FILE = Path(__file__).with_name("limits.yaml")

Edge = RunningEdge


def edge_settings(stack: Stack, data_dir: Path, **changes: object) -> Settings:
    """The stack's settings pointed at its services, every edge port free, the test limits."""
    return stack.settings.with_changes(
        data_dir=data_dir,
        redis_url=stack.redis_url,
        graph_addr=stack.address("graph"),
        tweets_addr=stack.address("tweets"),
        timeline_addr=stack.address("timeline"),
        http_port=0,
        auth_port=0,
        media_store_port=0,
        envoy_admin_port=0,
        envoy_access_log=str(data_dir / "access.log"),
        envoy_health_check_seconds=0.5,
        embedded_redis_port=0,
        rate_limits=str(LIMITS_FILE),
        upstream_timeout_seconds=5.0,
        **changes,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def edge(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    running = await start_edge(edge_settings(stack, tmp_path_factory.mktemp("edge")))
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http(edge: Edge) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the gateway; paths are relative to its URL."""
    async with aiohttp.ClientSession(base_url=edge.url) as session:
        yield session


@asynccontextmanager
async def another_envoy(edge: Edge, run_dir: Path, **changes: Any) -> AsyncIterator[EnvoyProcess]:
    """One more Envoy in front of the same stack, on free ports, with `changes` to its settings."""
    settings = edge.settings.with_changes(
        http_port=0, envoy_admin_port=0, envoy_access_log=str(run_dir / "access.log"), **changes
    )
    envoy = EnvoyProcess(settings, run_dir / "envoy")
    await envoy.start()
    try:
        yield envoy
    finally:
        await envoy.stop()
