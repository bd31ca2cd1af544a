"""POST /users, POST /sessions and GET /users/{user_id} through the gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from tests.helpers.rest import PASSWORD, call, new_handle, parse_time, sign_up


async def test_sign_up_answers_the_user_as_compact_snake_case_json(http: aiohttp.ClientSession) -> None:
    handle = new_handle()
    reply = await call(
        http, "POST", "/users", json={"handle": handle, "password": PASSWORD, "display_name": "Ann Lee"}
    )
    reply.expect(200)
    assert reply.headers["Content-Type"] == "application/json"
    body = reply.json
    assert set(body) == {"user_id", "handle", "display_name", "created_at"}
    assert isinstance(body["user_id"], str) and int(body["user_id"]) > 0
    assert (body["handle"], body["display_name"]) == (handle, "Ann Lee")
    assert abs((parse_time(body["created_at"]) - datetime.now(UTC)).total_seconds()) < 60
    assert reply.raw.startswith(b'{"user_id":"') and b'","handle":"' in reply.raw


async def test_sign_up_ignores_unknown_fields(http: aiohttp.ClientSession) -> None:
    handle = new_handle()
    body = {"handle": handle, "password": PASSWORD, "favourite_colour": "teal", "nested": {"x": [1]}}
    reply = (await call(http, "POST", "/users", json=body)).expect(200)
    assert reply.json["handle"] == handle


async def test_a_taken_handle_is_409(http: aiohttp.ClientSession) -> None:
    user = await sign_up(http)
    reply = await call(http, "POST", "/users", json={"handle": user.handle.upper(), "password": PASSWORD})
    reply.expect(409)
    assert reply.json["code"] == 6  # ALREADY_EXISTS


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "handle"),
        ({"handle": "x" * 31, "password": PASSWORD}, "handle"),
        ({"handle": "no spaces", "password": PASSWORD}, "handle"),
        ({"handle": "HANDLE", "password": "short"}, "password"),
        ({"handle": "HANDLE"}, "password"),
        ({"handle": "HANDLE", "password": PASSWORD, "display_name": "d" * 51}, "display_name"),
        ({"handle": 12345, "password": PASSWORD}, "handle"),
    ],
)
async def test_sign_up_bad_input_is_400_naming_the_field(
    http: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    if body.get("handle") == "HANDLE":
        body = {**body, "handle": new_handle()}
    reply = await call(http, "POST", "/users", json=body)
    reply.field_error(field)
    assert reply.json["code"] == 3


@pytest.mark.parametrize(
    "raw", [b'{"handle": "abc",', b"not json", b"[]", b"42", b'{"handle": "abc", "password": ["a", "list"]}']
)
async def test_sign_up_malformed_json_is_400(http: aiohttp.ClientSession, raw: bytes) -> None:
    reply = await call(http, "POST", "/users", data=raw, headers={"Content-Type": "application/json"})
    reply.expect(400, "INVALID_ARGUMENT")


async def test_log_in_answers_a_token_and_when_it_expires(http: aiohttp.ClientSession) -> None:
    handle = new_handle()
    created = (await call(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})).expect(200)
    reply = (await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})).expect(200)
    body = reply.json
    assert set(body) == {"token", "user_id", "expires_at", "refresh_token", "refresh_token_expires_at"}
    assert body["user_id"] == created.json["user_id"]
    assert len(body["token"]) >= 20
    assert parse_time(body["expires_at"]) > datetime.now(UTC)
    assert parse_time(body["refresh_token_expires_at"]) > parse_time(body["expires_at"])


async def test_log_in_with_a_wrong_password_is_401(http: aiohttp.ClientSession) -> None:
    user = await sign_up(http)
    reply = await call(http, "POST", "/sessions", json={"handle": user.handle, "password": "wrong password"})
    reply.expect(401, "BAD_CREDENTIALS")
    unknown = await call(http, "POST", "/sessions", json={"handle": new_handle(), "password": PASSWORD})
    unknown.expect(401, "BAD_CREDENTIALS")


@pytest.mark.parametrize(
    ("body", "field"), [({"password": PASSWORD}, "handle"), ({"handle": "someone"}, "password")]
)
async def test_log_in_missing_fields_is_400(
    http: aiohttp.ClientSession, body: dict[str, str], field: str
) -> None:
    (await call(http, "POST", "/sessions", json=body)).field_error(field)


async def test_get_user(http: aiohttp.ClientSession) -> None:
    reader = await sign_up(http)
    other = await sign_up(http)
    reply = (await call(http, "GET", f"/users/{other.id}", user=reader)).expect(200)
    assert reply.json["user_id"] == str(other.id)
    assert reply.json["handle"] == other.handle
    assert reply.json["display_name"] == other.handle  # empty display name means the handle
    parse_time(reply.json["created_at"])


async def test_get_unknown_user_is_404(http: aiohttp.ClientSession) -> None:
    reader = await sign_up(http)
    reply = await call(http, "GET", f"/users/{reader.id + 10**9}", user=reader)
    reply.expect(404, "USER_NOT_FOUND")
    assert reply.json["code"] == 5


async def test_get_user_with_a_bad_id_is_400(http: aiohttp.ClientSession) -> None:
    reader = await sign_up(http)
    for user_id in ("abc", "1.5", "-3", "0", "99999999999999999999"):
        (await call(http, "GET", f"/users/{user_id}", user=reader)).field_error("user_id")
