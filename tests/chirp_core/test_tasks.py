"""Background tasks end when asked, even when a library swallowed the cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from chirp_core.tasks import raise_if_cancelled


async def _swallowing_loop(stop: asyncio.Event, check: bool) -> None:
    """A retry loop whose wait turns a cancellation into "nothing yet", as a library read with a
    timeout can in Python 3.11."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
        if check:
            raise_if_cancelled()


async def test_a_swallowed_cancellation_is_raised_again_at_the_next_check() -> None:
    task = asyncio.create_task(_swallowing_loop(asyncio.Event(), check=True))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    raise_if_cancelled()  # the test's own task was never cancelled: nothing happens


async def test_without_the_check_the_loop_would_run_on() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(_swallowing_loop(stop, check=False))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.1)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)
