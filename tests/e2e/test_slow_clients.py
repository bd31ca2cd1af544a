"""Slow clients are cut off by Envoy: headers that trickle in, a body sent a byte at a time, a
connection left idle. A live stream, whose response is long, is not."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest_asyncio

from chirp_app.envoy_process import EnvoyProcess
from tests.e2e.conftest import Edge, another_envoy
from tests.helpers.rest import follow, sign_up, tweet

HEADERS_TIMEOUT = 1.0
REQUEST_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
# How much later than its timeout a cut-off may come on a loaded machine; the slow clients below
# would take 30 s or more to finish.
SLACK = 4.0
TRICKLE_SECONDS = 0.5


@pytest_asyncio.fixture(loop_scope="session")
async def strict_envoy(edge: Edge, tmp_path: Path) -> AsyncIterator[EnvoyProcess]:
    async with another_envoy(
        edge,
        tmp_path,
        envoy_request_headers_timeout_seconds=HEADERS_TIMEOUT,
        envoy_request_timeout_seconds=REQUEST_TIMEOUT,
        envoy_idle_timeout_seconds=IDLE_TIMEOUT,
        envoy_stream_idle_timeout_seconds=IDLE_TIMEOUT,
    ) as envoy:
        yield envoy


async def _trickle(url: str, head: bytes, slowly: bytes) -> tuple[float, bytes]:
    """Send `head` at once, then `slowly` a byte every TRICKLE_SECONDS; return how long until Envoy
    closed the connection, and what it sent before."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    received = bytearray()
    answer = asyncio.create_task(_read_until_closed(reader, received))
    try:
        writer.write(head)
        for byte in slowly:
            if answer.done() or received:
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait({answer}, timeout=TRICKLE_SECONDS)
        await asyncio.wait_for(answer, SLACK)
        return time.monotonic() - started, bytes(received)
    finally:
        answer.cancel()
        writer.close()


async def _read_until_closed(reader: asyncio.StreamReader, into: bytearray) -> None:
    """Collect what Envoy sends until it closes the connection (a reset counts as closed)."""
    try:
        while chunk := await reader.read(65536):
            into += chunk
    except ConnectionResetError:
        pass


def _status(received: bytes) -> int | None:
    return int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else None


async def test_headers_sent_slowly_are_cut_off(strict_envoy: EnvoyProcess) -> None:
    host = urlsplit(strict_envoy.url).netloc.encode()
    head = b"GET /healthz HTTP/1.1\r\nhost: " + host + b"\r\n"
    elapsed, received = await _trickle(strict_envoy.url, head, b"x-slow: " + b"a" * 60 + b"\r\n\r\n")
    assert elapsed < HEADERS_TIMEOUT + SLACK, elapsed
    # Closed, or closed after a 408.
    assert received == b"" or _status(received) == 408, received


async def test_a_body_sent_slowly_is_cut_off_with_408(strict_envoy: EnvoyProcess) -> None:
    body = json.dumps({"handle": "slowcoach", "password": "correct horse battery"}).encode()
    host = urlsplit(strict_envoy.url).netloc.encode()
    head = (
        b"POST /users HTTP/1.1\r\nhost: " + host + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    elapsed, received = await _trickle(strict_envoy.url, head, body)
    assert elapsed < REQUEST_TIMEOUT + SLACK, elapsed
    assert _status(received) == 408, received
    status = json.loads(received.partition(b"\r\n\r\n")[2])
    assert status["code"] == 4 and status["details"][0]["reason"] == "REQUEST_TIMEOUT", status


async def test_an_idle_connection_is_closed(strict_envoy: EnvoyProcess) -> None:
    parts = urlsplit(strict_envoy.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    received = bytearray()
    try:
        await asyncio.wait_for(_read_until_closed(reader, received), IDLE_TIMEOUT + SLACK)
    finally:
        writer.close()
    assert received == b""
    assert time.monotonic() - started >= IDLE_TIMEOUT * 0.9


async def test_a_live_stream_outlives_every_timeout(
    strict_envoy: EnvoyProcess, http: aiohttp.ClientSession
) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    await follow(http, alice, bob)
    headers = {**alice.headers, "Accept": "text/event-stream"}
    async with (
        aiohttp.ClientSession(base_url=strict_envoy.url) as via_strict,
        via_strict.get("/timeline/stream", params={"user_id": str(alice.id)}, headers=headers) as stream,
    ):
        assert stream.status == 200
        # Longer than the request, idle and stream idle timeouts, with nothing sent either way.
        await asyncio.sleep(max(REQUEST_TIMEOUT, IDLE_TIMEOUT) + 1.5)
        posted = await tweet(http, bob, "still listening")
        event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
        assert json.loads(event[len(b"data: ") :])["tweet"]["tweet_id"] == posted["tweet_id"]
