"""A TCP proxy for the tests that counts the bytes each way, the round trips (a request that
follows an answer, or opens a connection, starts one), and notes each HTTP request that passes
through it: put between one of our processes and a server (the object store, Redis), it shows
what our process sent and received, and how often it waited for an answer. It can also cut every
open connection (drop) and refuse new ones for a while (accepting = False): a network drop, seen
from the client."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_REQUEST = re.compile(rb"^(GET|HEAD|PUT|POST|DELETE|PATCH) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)
_RANGE = re.compile(rb"^range: *(.+?)\r?$", re.I | re.M)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    range: str | None


@dataclass
class CountingProxy:
    target_host: str
    target_port: int
    sent_upstream: int = 0
    received_from_upstream: int = 0
    round_trips: int = 0
    port: int = 0
    requests: list[SeenRequest] = field(default_factory=list)
    # Connections opened to the proxy, refused ones included; set once one was refused.
    connections: int = 0
    accepting: bool = True
    refused: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @classmethod
    def to(cls, url: str) -> CountingProxy:
        """A proxy in front of the server at `url` (http://host:port)."""
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        return cls(parts.hostname, parts.port)

    async def start(self) -> str:
        """Listen on `port`, a free one when 0; after close(), start() listens on the same port again."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.sent_upstream = self.received_from_upstream = self.round_trips = 0
        self.requests.clear()

    def drop(self) -> None:
        """Cut every open connection, both ways."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        if not self.accepting:
            self.refused.set()
            client_writer.transport.abort()
            return
        try:
            upstream = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = upstream
        self._writers |= {client_writer, upstream_writer}
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        answered = [True]  # per connection: the last chunk went downstream
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, answered, upstream=True),
                self._pipe(upstream_reader, client_writer, answered, upstream=False),
            )
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        answered: list[bool],
        *,
        upstream: bool,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if upstream and answered[0]:
                    self.round_trips += 1
                answered[0] = not upstream
                if upstream:
                    self.sent_upstream += len(chunk)
                    self._note(chunk)
                else:
                    self.received_from_upstream += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()

    def _note(self, chunk: bytes) -> None:
        found = _REQUEST.match(chunk)
        if found is None:
            return
        ranged = _RANGE.search(found.group(3))
        self.requests.append(
            SeenRequest(
                found.group(1).decode(), found.group(2).decode(), ranged.group(1).decode() if ranged else None
            )
        )
