"""Fixtures for the edge services: a real Redis (the embedded one, as `chirp up` runs it) and the
ext_authz + rate-limit server in-process on port 0, in front of the real user service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import redis.asyncio

from chirp.users.v1 import users_pb2
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.stack import Stack
from chirp_core.grpc_server import RunningServer
from chirp_core.redis_client import open_redis
from chirp_core.settings import Settings
from chirp_envoy_api.envoy.service.auth.v3 import external_auth_pb2_grpc
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2_grpc
from edge_proxy import server as edge_server
from tests.conftest import settings_for_tests
from tests.helpers.api import Api

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
    authorization: external_auth_pb2_grpc.AuthorizationAsyncStub
    rate_limits: rls_pb2_grpc.RateLimitServiceAsyncStub
    redis: redis.asyncio.Redis


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def edge(
    stack: Stack, embedded_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Edge]:
    settings = settings_for_tests(
        stack.database_url,
        tmp_path_factory.mktemp("edge"),
        graph_addr=stack.address("graph"),
        rate_limits=str(TEST_LIMITS),
        auth_cache_seconds=30.0,
        # Exact counts under a burst of concurrent calls on cold connections, on a loaded machine:
        # the request deadline itself is tested in tests/chirp_core/test_redis_breaker.py.
        redis_timeout_ms=1000,
    )
    server = await edge_server.start(settings, embedded_redis.url, 0)
    channel = grpc.aio.insecure_channel(f"{settings.host}:{server.port}")
    client = open_redis(embedded_redis.url)
    yield Edge(
        server,
        settings.with_changes(auth_addr=f"{settings.host}:{server.port}"),
        external_auth_pb2_grpc.AuthorizationStub(channel),
        rls_pb2_grpc.RateLimitServiceStub(channel),
        client,
    )
    await client.aclose()
    await channel.close(None)
    await server.stop(0.5)


async def sign_in(api: Api, password: str = "correct horse") -> tuple[int, str]:
    """A new user and a bearer token for them."""
    user = await api.new_user(password=password)
    session = await api.users.CreateSession(
        users_pb2.CreateSessionRequest(handle=user.handle, password=password)
    )
    return user.user_id, session.token
