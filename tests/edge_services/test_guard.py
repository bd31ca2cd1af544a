"""edge_proxy.guard: the Python gateway's calls to the edge services, as Envoy makes them."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import code_pb2

from chirp.users.v1 import users_pb2_grpc
from chirp_core.grpc_server import start_server
from chirp_core.rpc import downstream_channel
from chirp_envoy_api.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from edge_proxy.authz import AuthorizationServicer, TokenCache
from edge_proxy.guard import Guard, GuardRequest
from tests.edge_services.conftest import Edge, sign_in
from tests.edge_services.helpers import bearer
from tests.support import Api

CREATE_SESSION = "/chirp.users.v1.UserService/CreateSession"
CREATE_TWEET = "/chirp.tweets.v1.TweetService/CreateTweet"
HOME_TIMELINE = "/chirp.timeline.v1.TimelineService/GetHomeTimeline"
_addresses = itertools.count(1)


def fresh_ip() -> str:
    """A client address no other test has used (rate limits count per address)."""
    n = next(_addresses)
    return f"198.51.{n // 250}.{n % 250 + 1}"


def login(ip: str) -> GuardRequest:
    return GuardRequest("POST", "/sessions", {"content-type": "application/json"}, ip, CREATE_SESSION)


@pytest_asyncio.fixture(loop_scope="session")
async def guard(edge: Edge) -> AsyncIterator[Guard]:
    guard = Guard(edge.settings)
    yield guard
    await guard.close()


async def test_signed_in_request_is_allowed_as_its_user(guard: Guard, api: Api) -> None:
    user_id, token = await sign_in(api)
    request = GuardRequest(
        "GET", "/timeline", {**bearer(token), "x-chirp-user-id": "1"}, fresh_ip(), HOME_TIMELINE
    )

    decision = await guard.check(request)

    assert decision.allowed
    assert decision.user_id == user_id
    assert decision.http_status == 200 and decision.grpc_code == code_pb2.OK


async def test_public_request_is_allowed_anonymously(guard: Guard) -> None:
    decision = await guard.check(login(fresh_ip()))
    assert decision.allowed and decision.user_id is None
    health = await guard.check(GuardRequest("GET", "/healthz", {"x-chirp-user-id": "5"}, fresh_ip(), ""))
    assert health.allowed and health.user_id is None


async def test_missing_token_is_401_with_a_challenge(guard: Guard) -> None:
    decision = await guard.check(GuardRequest("POST", "/tweets", {}, fresh_ip(), CREATE_TWEET))

    assert not decision.allowed
    assert decision.user_id is None
    assert (decision.http_status, decision.grpc_code) == (401, code_pb2.UNAUTHENTICATED)
    assert decision.reason == "TOKEN_MISSING"
    assert decision.message.startswith("authentication required")
    assert decision.headers["www-authenticate"].startswith("Bearer")
    assert "content-type" not in decision.headers  # the gateway writes the body and its type


async def test_forged_token_is_401(guard: Guard) -> None:
    decision = await guard.check(GuardRequest("GET", "/timeline", bearer("nope"), fresh_ip(), HOME_TIMELINE))
    assert (decision.http_status, decision.reason) == (401, "TOKEN_INVALID")


async def test_past_the_limit_is_429_with_retry_after(guard: Guard) -> None:
    ip = fresh_ip()  # limits_test.yaml: 3 sign-ins per minute per IP
    decisions = [await guard.check(login(ip)) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    limited = decisions[-1]
    assert (limited.http_status, limited.grpc_code) == (429, code_pb2.RESOURCE_EXHAUSTED)
    assert limited.reason == "RATE_LIMITED"
    assert "sign-ins per IP" in limited.message
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await guard.check(login(fresh_ip()))).allowed  # another address has its own budget


async def test_per_user_budget_of_a_method(guard: Guard, api: Api) -> None:
    _, token = await sign_in(api)  # limits_test.yaml: 2 tweets per 3 hours per user
    tweet = GuardRequest("POST", "/tweets", bearer(token), fresh_ip(), CREATE_TWEET)
    read = GuardRequest("GET", "/timeline", bearer(token), fresh_ip(), HOME_TIMELINE)

    assert [(await guard.check(tweet)).allowed for _ in range(3)] == [True, True, False]
    assert (await guard.check(read)).allowed


async def test_limiting_off_skips_the_rate_limit_service(edge: Edge) -> None:
    guard = Guard(edge.settings.with_changes(rate_limits="off"))
    try:
        ip = fresh_ip()
        assert all([(await guard.check(login(ip))).allowed for _ in range(6)])
    finally:
        await guard.close()


async def test_unreachable_edge_services_fail_closed(edge: Edge) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    guard = Guard(edge.settings.with_changes(auth_addr=nobody))
    try:
        for request in (login(fresh_ip()), GuardRequest("GET", "/healthz", {}, fresh_ip(), "")):
            decision = await guard.check(request)
            assert not decision.allowed
            assert (decision.http_status, decision.grpc_code) == (503, code_pb2.UNAVAILABLE)
            assert decision.reason == "AUTH_UNAVAILABLE"
    finally:
        await guard.close()


async def test_failing_rate_limit_service_fails_open(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    """A server with the auth service only: every ShouldRateLimit call fails (UNIMPLEMENTED)."""
    users = downstream_channel(edge.settings.graph_target, 5.0)
    authorization = AuthorizationServicer(users_pb2_grpc.UserServiceStub(users), TokenCache(edge.redis, 30.0))

    def register(server: grpc.aio.Server) -> list[str]:
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorization, server)
        return [external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name]

    running = await start_server("auth-only", "127.0.0.1:0", register)
    guard = Guard(edge.settings.with_changes(auth_addr=f"127.0.0.1:{running.port}"))
    try:
        ip = fresh_ip()
        assert all([(await guard.check(login(ip))).allowed for _ in range(5)])
        assert "rate-limit service failed (UNIMPLEMENTED" in caplog.text
    finally:
        await guard.close()
        await running.stop(0)
        await users.close(None)
