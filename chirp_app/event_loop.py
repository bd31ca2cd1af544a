"""The event loop every Chirp process runs on: uvloop where it is installed (settings.event_loop
"uvloop", the default), else asyncio's own. uvloop runs the same code with less CPU per call.
And how a serving process keeps the garbage collector out of its requests' way."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from chirp_core.settings import Settings

T = TypeVar("T")
# Allocations less frees between young collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 10_000


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


def quiet_collector() -> None:
    """Once a worker serves: what it holds since start-up (modules, servers, pools) leaves the
    garbage collector's view, and young collections run less often. A request allocates a few
    hundred objects and frees them by reference counting, so full collections only cost, and in
    a loaded worker each one stalls every request in flight for milliseconds (the read tail)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
