"""The event loop chirp up's processes run on."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import uvloop

from chirp_app import event_loop
from chirp_core.settings import Settings


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_processes_run_on_uvloop_by_default() -> None:
    assert event_loop.run(_loop_type(), Settings()) is uvloop.Loop


def test_asyncio_s_own_loop_when_asked_for() -> None:
    loop_type = event_loop.run(_loop_type(), Settings(event_loop="asyncio"))
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_an_unknown_event_loop_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="CHIRP_EVENT_LOOP must be uvloop or asyncio"):
        Settings(event_loop="trio").validate()


def test_a_serving_process_freezes_its_start_up_objects_and_collects_young_ones_less_often() -> None:
    script = (
        "import gc; from chirp_app import event_loop; before = gc.get_freeze_count(); "
        "event_loop.quiet_collector(); print(before, gc.get_freeze_count(), gc.get_threshold()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, young = (int(n) for n in done.stdout.split())
    assert before == 0 and frozen > 1000  # the modules' objects, at least
    assert young == event_loop.GC_YOUNG_THRESHOLD > 700
