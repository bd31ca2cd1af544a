"""What only a real Envoy in front shows: gRPC-Web on the public listener, no gRPC or Envoy headers
leaking to REST clients, upstream outages as 503 JSON, health, and Envoy's supervision."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from chirp.users.v1 import users_pb2
from chirp_app.envoy_process import EnvoyError, EnvoyProcess, find_envoy
from tests.e2e.conftest import Edge, another_envoy
from tests.helpers.api import eventually, free_port
from tests.helpers.rest import User, call, sign_up, tweet

GRPC_WEB = {
    "content-type": "application/grpc-web+proto",
    "x-grpc-web": "1",
    "accept": "application/grpc-web+proto",
}


def grpc_web_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """(messages, trailers) of a gRPC-Web response body."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    offset = 0
    while offset < len(body):
        flag, length = body[offset], struct.unpack(">I", body[offset + 1 : offset + 5])[0]
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


async def test_a_browser_calls_an_rpc_with_grpc_web(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    request = users_pb2.GetUserRequest(user_id=alice.id).SerializeToString()
    reply = await call(
        http,
        "POST",
        "/chirp.users.v1.UserService/GetUser",
        user=alice,
        data=grpc_web_frame(request),
        headers=GRPC_WEB,
    )
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("application/grpc-web")
    messages, trailers = grpc_web_frames(reply.raw)
    assert trailers["grpc-status"] == "0", trailers
    assert users_pb2.User.FromString(messages[0]).handle == alice.handle
    # The same listener still wants the token: gRPC-Web goes through jwt_authn too.
    anonymous = await call(
        http, "POST", "/chirp.users.v1.UserService/GetUser", data=grpc_web_frame(request), headers=GRPC_WEB
    )
    assert anonymous.status == 401 or anonymous.headers.get("grpc-status") == "16", anonymous


async def test_a_grpc_web_error_keeps_its_status(http: aiohttp.ClientSession) -> None:
    """REST clients never see gRPC headers, but a gRPC-Web client must: they carry the status."""
    alice = await sign_up(http)
    request = users_pb2.GetUserRequest(user_id=999_999_999).SerializeToString()
    reply = await call(
        http,
        "POST",
        "/chirp.users.v1.UserService/GetUser",
        user=alice,
        data=grpc_web_frame(request),
        headers=GRPC_WEB,
    )
    _, trailers = grpc_web_frames(reply.raw)
    status = {**{k.lower(): v for k, v in reply.headers.items()}, **trailers}
    assert status.get("grpc-status") == "5", (reply, trailers)
    assert "999999999" in status.get("grpc-message", "")
    assert status.get("grpc-status-details-bin")
    assert not [name for name in reply.headers if name.lower().startswith("x-envoy-")]


async def test_sign_up_over_grpc_web_needs_no_token(http: aiohttp.ClientSession) -> None:
    request = users_pb2.CreateUserRequest(
        handle=f"web{os.getpid()}{id(http) % 10_000}", password="correct horse"
    )
    reply = await call(
        http,
        "POST",
        "/chirp.users.v1.UserService/CreateUser",
        data=grpc_web_frame(request.SerializeToString()),
        headers={**GRPC_WEB, "x-chirp-user-id": "1"},
    )
    messages, trailers = grpc_web_frames(reply.raw)
    assert trailers.get("grpc-status") == "0", (reply, trailers)
    assert users_pb2.User.FromString(messages[0]).handle == request.handle
    # And its errors come with their status too (a public route like any other).
    again = await call(
        http,
        "POST",
        "/chirp.users.v1.UserService/CreateUser",
        data=grpc_web_frame(request.SerializeToString()),
        headers=GRPC_WEB,
    )
    status = {**{k.lower(): v for k, v in again.headers.items()}, **grpc_web_frames(again.raw)[1]}
    assert status.get("grpc-status") == "6", again  # ALREADY_EXISTS: the handle is taken


def _leaks(headers: object) -> list[str]:
    names = [str(name).lower() for name in headers]  # type: ignore[attr-defined]
    return [name for name in names if name.startswith(("grpc-", "x-envoy-"))]


async def test_no_grpc_or_envoy_headers_reach_rest_clients(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    answers = [
        await call(http, "GET", f"/users/{alice.id}", user=alice),  # success
        await call(http, "GET", "/tweets/1", user=alice),  # an error from the service
        await call(http, "GET", "/timeline", user=alice, params={"user_id": "1"}),  # another user's
        await call(http, "GET", "/nowhere", user=alice),  # Envoy's own 404
        await call(http, "GET", "/timeline"),  # jwt_authn's 401
        await call(http, "POST", "/tweets", user=alice, data=b"{"),  # the transcoder's 400
    ]
    assert [a.status for a in answers] == [200, 404, 403, 404, 401, 400]
    for answer in answers:
        assert _leaks(answer.headers) == [], answer.headers
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-request-id"]


async def test_unauthenticated_is_401_with_a_challenge(http: aiohttp.ClientSession) -> None:
    reply = (await call(http, "GET", "/timeline", headers={"Authorization": "Bearer nope"})).expect(401)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_ping_is_answered_by_envoy_alone(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "GET", "/ping")
    assert (reply.status, reply.json) == (200, {})
    wrong = (await call(http, "POST", "/ping", json={})).expect(405, "METHOD_NOT_ALLOWED")
    assert wrong.headers["Allow"] == "GET"
    health = await call(http, "GET", "/healthz")
    assert health.status == 200 and _leaks(health.headers) == []


async def test_the_stream_is_not_cached(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    query = {"user_id": str(alice.id)}
    async with http.get("/timeline/stream", params=query, headers=alice.headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert _leaks(response.headers) == []


@pytest_asyncio.fixture(loop_scope="session")
async def envoy_without_timeline(edge: Edge, tmp_path: Path) -> AsyncIterator[EnvoyProcess]:
    """A second Envoy in front of the same stack, but whose timeline upstream is not there."""
    async with another_envoy(edge, tmp_path, timeline_addr=f"127.0.0.1:{free_port()}") as envoy:
        yield envoy


async def test_an_upstream_down_is_503_json_and_unhealthy(envoy_without_timeline: EnvoyProcess) -> None:
    async with aiohttp.ClientSession(base_url=envoy_without_timeline.url) as http:
        alice: User = await sign_up(http)  # graph and tweets are up
        await tweet(http, alice, "still posting")
        down = await call(http, "GET", "/timeline", user=alice, params={"user_id": str(alice.id)})
        down.expect(503, "UPSTREAM_UNAVAILABLE")
        assert down.json["code"] == 14 and down.headers["content-type"] == "application/json"
        assert _leaks(down.headers) == []
        health = await call(http, "GET", "/healthz")
        assert (health.status, health.json) == (503, {"status": "NOT_SERVING"})


async def test_envoy_is_restarted_on_the_same_port_when_it_dies(envoy_without_timeline: EnvoyProcess) -> None:
    envoy = envoy_without_timeline
    pid, url = envoy.pid, envoy.url
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def answered() -> int:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/ping") as response:
                return response.status
        except aiohttp.ClientError:
            return 0

    await eventually(answered, lambda status: status == 200)
    assert envoy.pid != pid and envoy.url == url and envoy.restarts == 1


async def test_a_missing_envoy_binary_says_how_to_get_one(edge: Edge) -> None:
    with pytest.raises(EnvoyError, match="CHIRP_ENVOY_PATH"):
        find_envoy(edge.settings.with_changes(envoy_path="/nonexistent/envoy"))
    assert os.access(find_envoy(edge.settings), os.X_OK)
    await asyncio.sleep(0)


async def test_envoy_serves_the_web_app_files(edge: Edge, tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text('<!doctype html><script src="/assets/app-1a2b.js"></script>')
    script = "console.log('chirp');" * 400  # past Envoy's default 4 KiB direct-response limit
    (web / "assets" / "app-1a2b.js").write_text(script)
    async with (
        another_envoy(edge, tmp_path, web_root=web) as envoy,
        aiohttp.ClientSession(base_url=envoy.url) as http,
    ):
        page = await call(http, "GET", "/")
        assert page.status == 200 and page.raw.startswith(b"<!doctype html>")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        asset = await call(http, "GET", "/assets/app-1a2b.js")
        assert asset.status == 200 and asset.raw.decode() == script
        assert "javascript" in asset.headers["content-type"]
        assert "immutable" in asset.headers["cache-control"]
        (await call(http, "GET", "/assets/missing.js")).expect(404, "NOT_FOUND")
        assert (await call(http, "GET", "/ping")).status == 200  # the API is still there


async def test_an_envoy_killed_while_it_starts_is_started_again(edge: Edge, tmp_path: Path) -> None:
    settings = edge.settings.with_changes(
        http_port=0, envoy_admin_port=0, envoy_access_log=str(tmp_path / "access.log")
    )
    envoy = EnvoyProcess(settings, tmp_path / "envoy")
    starting = asyncio.ensure_future(envoy.start())

    async def pid() -> int | None:
        return envoy.pid

    first = await eventually(pid, lambda found: found is not None)  # long before it is ready
    assert first is not None
    os.kill(first, signal.SIGKILL)
    try:
        await starting
        assert envoy.pid != first
        async with aiohttp.ClientSession() as http, http.get(f"{envoy.url}/healthz") as answer:
            assert answer.status == 200
    finally:
        await envoy.stop()
