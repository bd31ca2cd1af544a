"""Stopping background asyncio tasks for sure."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("chirp.tasks")


async def stop_tasks(tasks: list[asyncio.Task[None]], what: str) -> None:
    """Cancel and wait. Python 3.11 may turn a cancellation that meets a timeout inside a library
    into a TimeoutError (asyncio.timeout), which a retry loop then survives: cancel again until
    every task has ended, for at most five seconds."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(50):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    log.warning("%d %s tasks did not stop", len(pending), what)


def raise_if_cancelled() -> None:
    """Raise the cancellation of the current task if a library swallowed it. In Python 3.11 a
    cancel that meets an expiring asyncio.timeout inside a library call (redis-py's reads with a
    timeout) can come out as a timeout, and a loop that treats a timeout as "nothing yet" would
    then run on after its server stopped. The task still counts the request (cancelling())."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
