"""Keeps an embedded server (PostgreSQL, Redis) of `chirp up` running: when it dies on its own it
is started again on the same port and data, after a backoff that grows while it keeps dying."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

log = logging.getLogger("chirp.keeper")

CHECK_SECONDS = 0.2
# The waits before restart 1, 2, 3, ... within STABLE_SECONDS of each other.
BACKOFF_SECONDS = (0.2, 1.0, 2.0, 5.0, 10.0)
STABLE_SECONDS = 60.0


class EmbeddedServer(Protocol):
    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def launch(self) -> None: ...

    def wait_ready(self) -> None: ...


async def start_server(server: EmbeddedServer) -> None:
    """Launch on the event loop's thread (the server dies with it: see die_with_parent), then wait
    in a worker thread until it answers."""
    server.launch()
    await asyncio.to_thread(server.wait_ready)


class Keeper:
    """Watches `server` (already started) until stop()."""

    def __init__(self, name: str, server: EmbeddedServer) -> None:
        self.name = name
        self.server = server
        self.restarts: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"keeper of {self.name}")

    async def stop(self) -> None:
        """Stop watching (the caller then stops the server itself)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self.server.running:
                continue
            now = time.monotonic()
            recent = [t for t in self.restarts if t > now - STABLE_SECONDS]
            delay = BACKOFF_SECONDS[min(len(recent), len(BACKOFF_SECONDS) - 1)]
            log.error("%s (pid %s) died; starting it again in %.1fs", self.name, self.server.pid, delay)
            await asyncio.sleep(delay)
            self.restarts.append(time.monotonic())
            try:
                await start_server(self.server)
            except Exception as exc:  # the next turn waits longer
                log.error("%s did not start again: %s", self.name, exc)
            else:
                log.warning("%s started again (pid %s)", self.name, self.server.pid)
