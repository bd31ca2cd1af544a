"""The events stream's consumer group: the fan-out workers' side that talks to Redis.

N asyncio consumers share one consumer group of the stream the outbox relays write
(chirp_core.outbox), so each event is handed to one of them, parsed and given to the service
layer's applier (timeline_svc.fanout.FanoutApplier); it is acknowledged only after it was applied.
A consumer that dies leaves its events pending: every consumer periodically takes over
(XAUTOCLAIM) events idle longer than the claim timeout and applies them again. Delivery is
therefore at-least-once, and in any order; the applier's steps are idempotent.

An event whose apply fails stays pending and is retried when it is taken over. An outage
(ports.Unavailable: Redis or the graph service unreachable) is retried for as long as it lasts;
any other failure (an author the graph service does not know, a malformed event, a bug) counts as
an attempt, in a Redis hash that outlives the workers, and after `max_attempts` the event moves to
the dead-letter stream (`stream` + ":dead": its own fields plus error, attempts, original_id,
group, consumer) and is acknowledged, in one Lua script. Nothing is acknowledged as done that was
not applied.

A new consumer group starts from the beginning of the stream (ID 0): replaying what the stream
still holds is harmless, and after a flush of Redis nothing relayed meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol

import redis.asyncio
from redis.exceptions import ResponseError

from chirp_core.errors import ChirpError
from chirp_core.metrics import Metrics
from chirp_core.redis_client import RedisClient
from chirp_core.tasks import raise_if_cancelled, stop_tasks
from timeline_svc.models import Event
from timeline_svc.ports import Unavailable, UnknownUser
from timeline_svc.storage import REDIS_ERRORS

log = logging.getLogger("chirp.timeline.fanout")

READ_COUNT = 16
MAX_BACKOFF_SECONDS = 5.0


class MalformedEvent(ValueError):
    pass


class Applier(Protocol):
    async def apply(self, event: Event) -> None: ...


def parse_event(fields: Mapping[bytes, bytes]) -> Event:
    """An event as the outbox relays write it: type, seq and a JSON object payload."""
    try:
        event = Event(
            type=fields[b"type"].decode(),
            seq=int(fields[b"seq"]),
            payload=json.loads(fields[b"payload"]),
        )
    except KeyError as exc:
        raise MalformedEvent(f"no field {exc.args[0]!r}") from None
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from None
    if not isinstance(event.payload, Mapping):
        raise MalformedEvent("the payload is not a JSON object")
    return event


class FanoutWorkers:
    """`consumers` asyncio tasks in the consumer group `group` of `stream`."""

    def __init__(
        self,
        client: RedisClient,
        applier: Applier,
        *,
        stream: str,
        group: str,
        consumers: int,
        block_seconds: float,
        claim_idle_seconds: float,
        max_attempts: int = 5,
        metrics: Metrics | None = None,
        consumer_prefix: str = "",
    ) -> None:
        self._redis = client
        self._applier = applier
        self._stream = stream
        self._group = group
        self.dead_letter_stream = f"{stream}:dead"
        # Failed attempts per event ID, for this group; an entry goes when its event is acknowledged.
        self._attempts = f"{stream}:attempts:{group}"
        self._max_attempts = max_attempts
        self._metrics = metrics or Metrics()
        self._dead_letter = client.register_script(
            resources.files("timeline_svc").joinpath("lua", "dead_letter.lua").read_text()
        )
        self._count = consumers
        self._block_ms = max(1, int(block_seconds * 1000))
        self._claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self._claim_every = max(0.05, claim_idle_seconds / 2)
        self._tasks: list[asyncio.Task[None]] = []
        # A prefix that names the process across its restarts (its Snowflake node) lets a restarted
        # process finish the events it had read before it died at once, not after the claim timeout.
        self._resume = bool(consumer_prefix)
        self._prefix = consumer_prefix or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._group_ready = False
        self._stopping = False

    def start(self) -> None:
        for index in range(self._count):
            name = f"{self._prefix}-{index}"
            self._tasks.append(asyncio.create_task(self.consume(name), name=f"fanout {name}"))

    async def stop(self) -> None:
        """Cancel the consumers. An event being applied stays pending and is taken over later."""
        self._stopping = True
        await stop_tasks(self._tasks, "fan-out consumer")
        self._tasks = []

    async def consume(self, consumer: str) -> None:
        """Read, apply, acknowledge; now and then take over what a dead consumer left."""
        backoff = 0.05
        next_claim = time.monotonic() + self._claim_every
        resume = self._resume
        while not self._stopping:
            try:
                await self.ensure_group()
                if resume:
                    await self.resume_own(consumer)
                    resume = False
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self._claim_every
                    await self._claim(consumer)
                await self.read_and_apply(consumer, block_ms=self._block_ms)
                raise_if_cancelled()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if "NOGROUP" in str(exc):  # Redis was flushed or restarted empty
                    self._group_ready = False
                    continue
                if not _outage(exc):
                    log.exception("fan-out consumer %s failed", consumer)
                else:
                    log.warning("fan-out consumer %s: %s; retrying in %.2fs", consumer, exc, backoff)
                    # The event the outage interrupted is still ours: apply it again once the
                    # outage ends, rather than after the claim timeout.
                    resume = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def read_and_apply(self, consumer: str, *, block_ms: int) -> int:
        """One XREADGROUP and the events it gave; how many were done with (applied or dead-lettered)."""
        try:
            reply: Any = await self._read(consumer, ">", block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False
            return 0
        done = 0
        for _stream, messages in reply or []:
            for message_id, fields in messages:
                done += await self._handle(consumer, message_id, fields)
        return done

    async def resume_own(self, consumer: str) -> int:
        """Handle the events still pending for `consumer` (read by an earlier run of this process
        that died before acknowledging them); how many were done with."""
        done, start = 0, "0"
        while True:
            reply: Any = await self._read(consumer, start, None)
            messages = reply[0][1] if reply else []
            if not messages:
                return done
            for message_id, fields in messages:
                log.info("%s resumes event %s", consumer, message_id)
                done += await self._handle(consumer, message_id, fields or None)
                start = message_id

    async def _read(self, consumer: str, start: Any, block_ms: int | None) -> Any:
        """XREADGROUP of up to READ_COUNT events after `start`, blocking up to block_ms."""
        if not isinstance(self._redis, redis.asyncio.RedisCluster):
            return await self._redis.xreadgroup(
                self._group, consumer, {self._stream: start}, count=READ_COUNT, block=block_ms
            )
        # Sent straight to the stream's node: for XREADGROUP, whose keys follow STREAMS, the cluster
        # client would otherwise ask its default node (perhaps a dead one) where the keys are.
        await self._redis.initialize()
        pieces: list[Any] = ["GROUP", self._group, consumer, "COUNT", READ_COUNT]
        if block_ms is not None:
            pieces += ["BLOCK", block_ms]
        node = self._redis.get_node_from_key(self._stream)
        return await self._redis.execute_command(
            "XREADGROUP", *pieces, "STREAMS", self._stream, start, target_nodes=node
        )

    async def _claim(self, consumer: str) -> None:
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self._stream, self._group, consumer, self._claim_idle_ms, start_id=start, count=READ_COUNT
            )
            start, messages = reply[0], reply[1]
            for message_id, fields in messages:
                log.info("%s took over event %s", consumer, message_id)
                await self._handle(consumer, message_id, fields)
            if start in (b"0-0", "0-0") or not messages:
                return

    async def _handle(self, consumer: str, message_id: Any, fields: Mapping[bytes, bytes] | None) -> bool:
        """Apply and acknowledge: True when done. An outage is raised (the consumer backs off) and
        any other failure recorded; either way the event stays pending, taken over after the claim
        timeout, until it is applied or has failed max_attempts times (then it is dead-lettered)."""
        if fields is None:  # trimmed from the stream while pending: nothing left to apply
            log.warning("event %s is no longer in the stream; acknowledging it", message_id)
            await self._acknowledge(message_id)
            return True
        try:
            await self._applier.apply(parse_event(fields))
        except Exception as exc:
            if _outage(exc):
                self._metrics.fanout_failures.labels("outage").inc()
                raise
            self._metrics.fanout_failures.labels("error").inc()
            return await self._failed(consumer, message_id, fields, exc)
        await self._acknowledge(message_id)
        return True

    async def _acknowledge(self, message_id: Any) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self._stream, self._group, message_id)
            pipe.hdel(self._attempts, message_id)
            await pipe.execute()

    async def _failed(
        self, consumer: str, message_id: Any, fields: Mapping[bytes, bytes], exc: Exception
    ) -> bool:
        attempts = int(await self._redis.hincrby(self._attempts, message_id, 1))
        reason = _reason(exc)
        event_type = _text(fields.get(b"type", b"?"))
        if attempts < self._max_attempts:
            log.warning(
                "event %s (%s) failed in group %s, attempt %d of %d, to be retried: %s",
                _text(message_id),
                event_type,
                self._group,
                attempts,
                self._max_attempts,
                reason,
            )
            return False
        letter: list[Any] = [part for field in fields.items() for part in field]
        letter += ["error", reason, "attempts", attempts, "original_id", message_id]
        letter += ["group", self._group, "consumer", consumer]
        moved = await self._dead_letter(
            keys=[self._stream, self.dead_letter_stream, self._attempts],
            args=[self._group, message_id, *letter],
            client=self._redis,
        )
        if moved is None:  # another consumer acknowledged it meanwhile
            return False
        label = "malformed" if isinstance(exc, MalformedEvent) else event_type
        self._metrics.fanout_dead_letters.labels(label).inc()
        log.error(
            "event %s (%s) moved by group %s to the dead-letter stream %s as %s after %d failed attempts: %s",
            _text(message_id),
            event_type,
            self._group,
            self.dead_letter_stream,
            _text(moved),
            attempts,
            reason,
            exc_info=None if isinstance(exc, _EXPLAINED) else exc,
        )
        return True

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


# Failures whose message says it all; any other is logged with its traceback when dead-lettered.
_EXPLAINED = (ChirpError, UnknownUser, MalformedEvent)


def _outage(exc: Exception) -> bool:
    """Redis or another service did not answer: not the event's fault."""
    return isinstance(exc, (Unavailable, *REDIS_ERRORS))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ChirpError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, UnknownUser):
        return f"unknown user: {exc}"
    if isinstance(exc, MalformedEvent):
        return f"malformed event: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
