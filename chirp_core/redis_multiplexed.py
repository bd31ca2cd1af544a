"""One Redis connection shared by every concurrent caller of a process: each command is written
the moment it is called and its reply is the next one to arrive for it (Redis answers a connection
in order). No pool, no lock, no per-command connection checks, and concurrent calls pipeline by
themselves: a warm timeline read spends about half the client CPU of redis-py's pooled client
(python -m bench.request_redis).

Replies come as redis-py gives them without decoding (bytes, ints, lists, None); error replies
raise redis-py's exceptions (NoScriptError, ResponseError, ...). A lost connection fails the calls
waiting on it with redis.ConnectionError (each tried once more on a new connection, as redis-py's
pooled client does). A call abandoned while nothing at all came back since it was sent (a stalled
or unreachable server: its caller's deadline passed) closes the connection, so that a later call
does not queue behind replies that will never come. Deadlines and the circuit breaker are the
caller's (chirp_core.redis_client)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
from redis._parsers.base import BaseParser
from redis.connection import parse_url
from redis.exceptions import InvalidResponse


class _RedisProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.last_reply_at = float("-inf")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self.last_reply_at = time.monotonic()
            waiter = self._waiting.popleft()
            if waiter.done():  # its caller gave up; the reply is dropped
                continue
            if isinstance(reply, Exception):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = redis.ConnectionError(f"Redis closed the connection: {exc or 'end of stream'}")
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)

    async def send(self, args: Sequence[Any]) -> Any:
        assert self._transport is not None
        if self.lost is not None:
            raise self.lost
        waiter = asyncio.get_running_loop().create_future()
        sent_at = time.monotonic()
        self._transport.write(hiredis.pack_command(tuple(args)))
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if self.last_reply_at < sent_at:
                self.close()
            raise

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class MultiplexedRedis:
    """The module's connection to the Redis at `url` (redis:// or unix://, no TLS)."""

    def __init__(self, url: str) -> None:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port: int = options.get("port", 6379)
        self._setup: list[tuple[Any, ...]] = []
        if options.get("password"):
            user = options.get("username")
            self._setup.append(("AUTH", user, options["password"]) if user else ("AUTH", options["password"]))
        if options.get("db"):
            self._setup.append(("SELECT", options["db"]))
        self._protocol: _RedisProtocol | None = None
        self._connecting: asyncio.Task[_RedisProtocol] | None = None

    @staticmethod
    def serves(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    async def execute(self, *args: Any) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            return await (await self._connected()).send(args)
        try:
            return await protocol.send(args)
        except redis.ConnectionError:
            # A connection the server dropped (restarted) since it was last used: one more try on
            # a new one, as redis-py's pooled client does.
            return await (await self._connected()).send(args)

    async def _connected(self) -> _RedisProtocol:
        # Callers arriving while a connection is being made share it.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            # Its error reaches whoever still waits; with no one left it must not be reported.
            self._connecting.add_done_callback(lambda task: task.cancelled() or task.exception())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _RedisProtocol:
        loop = asyncio.get_running_loop()
        try:
            if self._path is not None:
                _, protocol = await loop.create_unix_connection(_RedisProtocol, self._path)
            else:
                _, protocol = await loop.create_connection(_RedisProtocol, self._host, self._port)
        except OSError as exc:
            raise redis.ConnectionError(f"cannot connect to Redis: {exc}") from exc
        for command in self._setup:
            await protocol.send(command)
        self._protocol = protocol
        return protocol

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
