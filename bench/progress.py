"""A small progress bar on stderr: redrawn in place on a terminal, one line per finished bar
otherwise (so logs of a CI run stay readable)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

WIDTH = 28
REDRAW_SECONDS = 0.2


class Progress:
    def __init__(self, label: str, total: float, *, unit: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.unit = unit
        self.done = 0.0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._began = time.monotonic()
        self._drawn = 0.0
        self._closed = False

    def advance(self, amount: float = 1.0) -> None:
        self.update(self.done + amount)

    def update(self, done: float) -> None:
        self.done = min(done, self.total)
        now = time.monotonic()
        if self._tty and now - self._drawn >= REDRAW_SECONDS:
            self._drawn = now
            self._stream.write("\r" + self.render())
            self._stream.flush()

    def render(self) -> str:
        share = self.done / self.total
        filled = round(share * WIDTH)
        bar = "#" * filled + "-" * (WIDTH - filled)
        unit = f" {self.unit}" if self.unit else ""
        amount = f"{self.done:,.0f}/{self.total:,.0f}{unit}"
        return f"{self.label:<34} [{bar}] {share:4.0%} {amount} {time.monotonic() - self._began:6.1f}s"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.write(("\r" if self._tty else "") + self.render() + "\n")
        self._stream.flush()

    async def follow_clock(self, seconds: float) -> None:
        """Advance with the wall clock for `seconds` (a phase of fixed length), then close."""
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            self.update(elapsed)
            await asyncio.sleep(min(REDRAW_SECONDS, seconds - elapsed))
        self.update(seconds)
        self.close()
