"""Fixtures for the edge service: a real Redis (the embedded one, as `chirp up` runs it) and the
rate-limit server in-process on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import redis.asyncio

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.stack import Stack
from chirp_core.grpc_server import RunningServer
from chirp_core.redis_client import open_redis
from chirp_core.settings import Settings
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2_grpc
from edge_proxy import server as edge_server
from tests.conftest import settings_for_tests

# Low limits, and test-only descriptors, in the shipped file's format.
TEST_LIMITS = Path(__file__).with_name("limits_test.yaml")


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Edge:
    """The running edge services and clients for them."""

    server: RunningServer
    settings: Settings  # auth_addr names this server, as the gateway's settings would
    rate_limits: rls_pb2_grpc.RateLimitServiceAsyncStub
    redis: redis.asyncio.Redis


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def edge(
    stack: Stack, embedded_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Edge]:
    settings = settings_for_tests(
        stack.database_url,
        tmp_path_factory.mktemp("edge"),
        rate_limits=str(TEST_LIMITS),
        # Exact counts under a burst of concurrent calls on cold connections, on a loaded machine:
        # the request deadline itself is tested in tests/chirp_core/test_redis_breaker.py.
        redis_timeout_ms=1000,
        redis_cluster=False,  # the edge's own Redis (its counters on a cluster: test_redis_cluster.py)
    )
    server = await edge_server.start(settings, embedded_redis.url, 0)
    channel = grpc.aio.insecure_channel(f"{settings.host}:{server.port}")
    client = open_redis(embedded_redis.url)
    yield Edge(
        server,
        settings.with_changes(auth_addr=f"{settings.host}:{server.port}"),
        rls_pb2_grpc.RateLimitServiceStub(channel),
        client,
    )
    await client.aclose()
    await channel.close(None)
    await server.stop(0.5)
