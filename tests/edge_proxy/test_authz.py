"""envoy.service.auth.v3.Authorization/Check against the real user service and the real Redis."""

from __future__ import annotations

import asyncio

import pytest
from google.rpc import code_pb2

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_envoy_api.envoy.config.core.v3 import base_pb2
from edge_proxy.authz import CACHE_PREFIX, TokenCache
from tests.edge_proxy.conftest import Edge, sign_in
from tests.helpers.api import Api
from tests.helpers.database import query
from tests.helpers.envoy_calls import bearer, check_request, denied_body, denied_headers, upstream_headers


async def test_valid_token_is_allowed_and_names_the_user(edge: Edge, api: Api) -> None:
    user_id, token = await sign_in(api)
    response = await edge.authorization.Check(check_request("GET", "/timeline?limit=5", bearer(token)))

    assert response.status.code == code_pb2.OK
    assert response.HasField("ok_response")
    [option] = response.ok_response.headers
    assert (option.header.key, option.header.value) == ("x-chirp-user-id", str(user_id))
    assert option.HasField("append") and option.append.value is False
    assert option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    # Envoy removes after it sets: listing the header there too would drop the value just set.
    assert "x-chirp-user-id" not in response.ok_response.headers_to_remove


async def test_forged_user_header_is_replaced(edge: Edge, api: Api) -> None:
    user_id, token = await sign_in(api)
    sent = {**bearer(token), "x-chirp-user-id": "12345"}
    response = await edge.authorization.Check(check_request("POST", "/tweets", sent))

    assert response.status.code == code_pb2.OK
    assert upstream_headers(response, sent)["x-chirp-user-id"] == str(user_id)


@pytest.mark.parametrize(
    ("headers", "reason", "challenge"),
    [
        ({}, "TOKEN_MISSING", 'Bearer realm="chirp"'),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "TOKEN_MALFORMED", 'error="invalid_request"'),
        ({"authorization": "Bearer"}, "TOKEN_MALFORMED", 'error="invalid_request"'),
        (bearer("forged-token-that-no-session-has"), "TOKEN_INVALID", 'error="invalid_token"'),
    ],
)
async def test_missing_or_bad_token_is_401_with_a_status_body(
    edge: Edge, headers: dict[str, str], reason: str, challenge: str
) -> None:
    response = await edge.authorization.Check(check_request("GET", "/timeline", headers))

    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.HasField("denied_response")
    assert response.denied_response.status.code == 401
    sent_headers = denied_headers(response)
    assert sent_headers["www-authenticate"].startswith("Bearer")
    assert challenge in sent_headers["www-authenticate"]
    assert sent_headers["content-type"] == "application/json"
    body = denied_body(response)
    assert body["code"] == 16
    assert body["message"]
    [info] = body["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == reason
    assert info["domain"] == "chirp.dev"


async def test_expired_token_is_401(edge: Edge, api: Api, database_url: str) -> None:
    _, token = await sign_in(api)
    await query(database_url, "UPDATE graph.sessions SET expires_at = now() - interval '1 minute'")

    response = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))

    assert response.denied_response.status.code == 401
    assert denied_body(response)["details"][0]["reason"] == "TOKEN_EXPIRED"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/users"), ("POST", "/sessions"), ("POST", "/chirp.users.v1.UserService/CreateUser")],
)
async def test_public_routes_pass_without_a_token_and_lose_a_forged_user(
    edge: Edge, method: str, path: str
) -> None:
    sent = {"x-chirp-user-id": "777"}
    response = await edge.authorization.Check(check_request(method, path, sent, public=True))

    assert response.status.code == code_pb2.OK
    assert list(response.ok_response.headers_to_remove) == ["x-chirp-user-id"]
    assert "x-chirp-user-id" not in upstream_headers(response, sent)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/users"), ("DELETE", "/sessions"), ("GET", "/timeline")]
)
async def test_routes_not_marked_public_need_a_token(edge: Edge, method: str, path: str) -> None:
    response = await edge.authorization.Check(check_request(method, path))
    assert response.denied_response.status.code == 401


async def test_validated_token_is_cached_until_its_expiry(edge: Edge, api: Api, database_url: str) -> None:
    user_id, token = await sign_in(api)
    key = TokenCache.key(token)
    assert key.startswith(CACHE_PREFIX) and token not in key
    assert await edge.redis.get(key) is None

    first = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))
    assert first.status.code == code_pb2.OK
    assert await edge.redis.get(key) == str(user_id).encode()
    assert 0 < await edge.redis.pttl(key) <= edge.settings.auth_cache_seconds * 1000

    # With the session gone from the user service, only the cache can still allow the token.
    await query(database_url, "DELETE FROM graph.sessions")
    second = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))
    assert second.status.code == code_pb2.OK
    assert upstream_headers(second, {})["x-chirp-user-id"] == str(user_id)

    await edge.redis.delete(key)
    third = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))
    assert third.denied_response.status.code == 401


async def test_cache_entry_never_outlives_the_token(edge: Edge, api: Api, database_url: str) -> None:
    _, token = await sign_in(api)
    await query(database_url, "UPDATE graph.sessions SET expires_at = now() + interval '2 seconds'")

    response = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))

    assert response.status.code == code_pb2.OK
    assert 0 < await edge.redis.pttl(TokenCache.key(token)) <= 2000


async def test_redis_down_falls_through_to_the_user_service(
    edge: Edge, api: Api, embedded_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, token = await sign_in(api)
    embedded_redis.stop()
    try:
        response = await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))
        forged = await edge.authorization.Check(check_request("GET", "/timeline", bearer("not-a-token")))
    finally:
        embedded_redis.start()
        # The next test finds Redis in use again: after the breaker's open period, one call (its
        # trial) reaches the restarted Redis and closes it.
        await asyncio.sleep(edge.settings.redis_breaker_open_seconds)
        await edge.authorization.Check(check_request("GET", "/timeline", bearer(token)))

    assert upstream_headers(response, {})["x-chirp-user-id"] == str(user_id)
    assert forged.denied_response.status.code == 401
    assert "token cache unavailable" in caplog.text
