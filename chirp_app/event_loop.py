"""The event loop every Chirp process runs on: uvloop where it is installed (settings.event_loop
"uvloop", the default), else asyncio's own. uvloop runs the same code with less CPU per call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from chirp_core.settings import Settings

T = TypeVar("T")


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when settings ask for it and it imports; None means asyncio's default."""
    if settings.event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        return runner.run(main)
