"""Redis clients: a plain one with short timeouts, and the request path's, whose every command
has a deadline and goes through a circuit breaker.

Everything kept in Redis is derived state and every caller has a fallback (PostgreSQL through the
services, failing open for rate limits), so a Redis that does not answer must cost a request a few
tens of milliseconds, not seconds. The request-path client gives each command (a plain command, a
pipeline, a Lua script) settings.redis_timeout_ms; a timeout or a connection error opens the
breaker, and for settings.redis_breaker_open_seconds every command fails at once with
RedisUnavailable, without touching a socket. Then one trial command goes through (half-open): its
success closes the breaker, its failure opens it again. Its scripts (EVALSHA: every warm read) go
over one connection shared by the whole process, chirp_core.redis_multiplexed.

Clients whose commands block on purpose (XREADGROUP BLOCK, pub/sub) and background work (the
outbox relays, the fan-out workers) use the plain client: no breaker, longer read timeouts.

On a Redis Cluster (settings.redis_cluster) both are redis-py's cluster client, seeded with the
one URL, with the same timeouts, no retry and no breaker: a breaker for the whole
cluster would take every node out of use when one fails, while a dead node refuses connections at
once, so its keys' callers fall back without waiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from chirp_core.redis_multiplexed import MultiplexedRedis
from chirp_core.settings import Settings

log = logging.getLogger("chirp.redis")

# The plain client's timeouts (the request path's are settings.redis_timeout_ms).
REDIS_TIMEOUT_SECONDS = 0.5

T = TypeVar("T")
# Errors that say Redis did not answer; a reply, even an error reply, says it did.
_OUTAGES: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
# Set while a guarded call runs: the commands it issues itself (a pipeline loading its scripts)
# are part of it, not calls of their own.
_guarded: contextvars.ContextVar[bool] = contextvars.ContextVar("chirp_redis_guarded", default=False)


class RedisUnavailable(redis.ConnectionError):
    """The breaker is open: Redis failed a moment ago, so the command was not sent."""


# A client of one Redis or of a Redis Cluster.
RedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster


def open_redis(
    url: str, *, read_timeout: float = REDIS_TIMEOUT_SECONDS, cluster: bool = False
) -> RedisClient:
    """A client for `url` with short timeouts (see REDIS_TIMEOUT_SECONDS) and no breaker, for
    background work. `read_timeout` is longer for a client whose commands block on purpose."""
    if cluster:
        return open_cluster(url, timeout=read_timeout)
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=read_timeout,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=_reconnect_once(),
        health_check_interval=30,
    )
    return client


def open_cluster(url: str, *, timeout: float) -> redis.asyncio.RedisCluster:
    """A Redis Cluster client seeded with `url` (module doc)."""
    return redis.asyncio.RedisCluster.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, REDIS_TIMEOUT_SECONDS),
        # No retry: redis-py's cluster pipeline sleeps 250 ms before each one, and a call that
        # fails falls back at once (the client learns the cluster's layout again on its next call).
        retry=Retry(NoBackoff(), 0),
    )


def open_request_redis(url: str, settings: Settings, *, multiplexed: bool = True) -> RedisClient:
    """The request path's client: a deadline per command and a circuit breaker (module doc);
    scripts over one multiplexed connection (chirp_core.redis_multiplexed) unless told not to."""
    deadline = settings.redis_timeout_ms / 1000
    if settings.redis_cluster:
        return open_cluster(url, timeout=deadline)
    breaker = shared_breaker(url, settings.redis_breaker_open_seconds)
    pool = redis.asyncio.ConnectionPool.from_url(
        url,
        socket_timeout=deadline,
        socket_connect_timeout=deadline,
        retry=_reconnect_once(),
        health_check_interval=30,
    )
    shared = MultiplexedRedis(url) if multiplexed and MultiplexedRedis.serves(url) else None
    client = GuardedRedis(breaker, deadline, shared, connection_pool=pool)
    client.auto_close_connection_pool = True  # the client owns its pool, as from_url's does
    return client


# One call of a script: its keys and its arguments.
ScriptCall = tuple[Sequence[Any], Sequence[Any]]


async def run_script_each(client: RedisClient, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    """`script` once per call, all in one pipeline (on a cluster, one per node, sent in parallel);
    their replies. A Redis that forgot the script (restarted, flushed) is sent it again, once."""
    if not calls:
        return []
    try:
        return await _evalsha_each(client, script, calls)
    except NoScriptError:
        script.sha = await client.script_load(script.script)  # on a cluster: on every primary
        return await _evalsha_each(client, script, calls)


async def _evalsha_each(client: RedisClient, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:  # releases its connection on error too
        for keys, args in calls:
            # execute_command: redis-py refuses pipe.evalsha() on a cluster.
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return list(await pipe.execute())


_breakers: dict[tuple[str, float], CircuitBreaker] = {}


def shared_breaker(url: str, open_seconds: float) -> CircuitBreaker:
    """One breaker per Redis in a process: the services of one process (all of them, under `chirp
    up`) learn together that Redis is down, and send it one trial call per open period, not one
    each; a request that uses Redis in several services then waits for at most one deadline."""
    key = (url, open_seconds)
    if key not in _breakers:
        _breakers[key] = CircuitBreaker(open_seconds, name=url)
    return _breakers[key]


def _reconnect_once() -> Retry:
    """One immediate retry on a connection error only: that replaces a pooled connection a
    restarted server dropped. A timeout is not retried: a second wait would double the first."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class CircuitBreaker:
    """Closed: calls go through. A failure opens it for `open_seconds`, when calls are refused;
    then it is half-open: one trial call goes through, the others are refused until it ends. A
    timeout counts as a failure only when no other call was answered meanwhile (_timed_out)."""

    def __init__(
        self, open_seconds: float, *, name: str = "redis", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._open_seconds = open_seconds
        self._name = name
        self._clock = clock
        self._open_until: float | None = None  # None: closed
        self._trial_running = False
        self._last_answer = float("-inf")  # when a call last succeeded

    @property
    def closed(self) -> bool:
        return self._open_until is None

    def admit(self) -> bool:
        """Whether a call may go now; True obliges the caller to report its outcome."""
        if self._open_until is None:
            return True
        if self._trial_running or self._clock() < self._open_until:
            return False
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        if self._open_until is not None:
            log.info("Redis at %s answers again; circuit closed", self._name)
        self._open_until = None
        self._trial_running = False

    def failed(self, error: BaseException) -> None:
        if self._open_until is None or self._trial_running:
            log.warning(
                "Redis at %s failed (%s: %s); skipping it for %.1f s",
                self._name,
                type(error).__name__,
                error,
                self._open_seconds,
            )
        self._open_until = self._clock() + self._open_seconds
        self._trial_running = False

    async def call(self, make: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Run make() within `deadline` seconds, unless the breaker refuses it."""
        if _guarded.get():
            return await make()
        if not self.admit():
            raise RedisUnavailable(f"Redis at {self._name} failed a moment ago; not calling it")
        token = _guarded.set(True)
        started = self._clock()
        try:
            async with asyncio.timeout(deadline):
                result = await make()
        except TimeoutError as exc:  # asyncio's; redis-py's own is a RedisError
            self._timed_out(exc, started)
            message = f"Redis at {self._name} did not answer within {deadline * 1000:.0f} ms"
            raise redis.TimeoutError(message) from exc
        except redis.TimeoutError as exc:
            self._timed_out(exc, started)
            raise
        except _OUTAGES as exc:
            self.failed(exc)
            raise
        except BaseException:
            # An error reply or a cancelled caller: Redis may be fine; a trial must not stay taken.
            self._trial_running = False
            raise
        finally:
            _guarded.reset(token)
        self._last_answer = self._clock()
        self.succeeded()
        return result

    def _timed_out(self, error: BaseException, started: float) -> None:
        """A timeout opens the breaker only when no call was answered since this one began. When
        others were, Redis is alive and the wait was ours (an event loop too busy to read the
        reply in time, under load): this call falls back, the others keep using Redis."""
        if self._trial_running or self._last_answer < started:
            self.failed(error)
        else:
            self._trial_running = False


class GuardedRedis(redis.asyncio.Redis):
    """redis.asyncio.Redis whose commands, pipelines and scripts go through `breaker`, each
    within `deadline` seconds. A timed-out command's connection is closed by redis-py (it never
    goes back to the pool with a reply still due). Scripts (EVALSHA, whose replies redis-py
    passes on as they come) go over one multiplexed connection when `multiplexed` is given."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        deadline: float,
        multiplexed: MultiplexedRedis | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.breaker = breaker
        self.deadline = deadline
        self.multiplexed = multiplexed

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.multiplexed is not None and args[0] == "EVALSHA" and not options:
            multiplexed = self.multiplexed
            return await self.breaker.call(lambda: multiplexed.execute(*args), self.deadline)
        return await self.breaker.call(
            lambda: super(GuardedRedis, self).execute_command(*args, **options),  # type: ignore[no-untyped-call]
            self.deadline,
        )

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.multiplexed is not None:
            await self.multiplexed.aclose()
        await super().aclose(close_connection_pool)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> GuardedPipeline:
        return GuardedPipeline(
            self.breaker,
            self.deadline,
            self.connection_pool,
            self.response_callbacks,
            transaction,
            shard_hint,
        )


class GuardedPipeline(Pipeline):
    """A pipeline whose execute() (scripts loaded, commands sent, replies read) is one guarded
    call, as is each command it runs at once (WATCH and what follows it)."""

    def __init__(self, breaker: CircuitBreaker, deadline: float, *args: Any) -> None:
        super().__init__(*args)
        self.breaker = breaker
        self.deadline = deadline

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        result: list[Any] = await self.breaker.call(
            lambda: super(GuardedPipeline, self).execute(raise_on_error), self.deadline
        )
        return result

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.breaker.call(
            lambda: super(GuardedPipeline, self).immediate_execute_command(*args, **options),  # type: ignore[no-untyped-call]
            self.deadline,
        )
