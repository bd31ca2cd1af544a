"""Rate limiting at the edge: Envoy's global rate-limit gRPC API
(envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit), counted in Redis.

Envoy calls it for writes and sign-ins only: a read route has no descriptor for it, and Envoy
limits reads itself with a token bucket per user (edge_proxy.limits, read_limits), so a read
costs no call here. Envoy waits settings.rate_limit_timeout_ms for an answer, then lets the write
through; the Redis calls here give up sooner or as soon (settings.redis_timeout_ms, then the
circuit breaker skips Redis: chirp_core.redis_client), so a stalled Redis still gets an answer.

Each descriptor with a limit gets one counter per fixed window, incremented atomically by a Lua
script (INCRBY, and the expiry set when the window's key is new). If Redis fails, every request is
let through and a warning logged: Envoy's `failure_mode_deny: false`, and DESIGN.md's rule that
losing Redis loses no data and takes nothing down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio
from google.protobuf import duration_pb2
from google.rpc import code_pb2

from chirp_core.redis_client import RedisClient, run_script_each
from chirp_core.rpc import status_body
from chirp_envoy_api.envoy.config.core.v3 import base_pb2
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from edge_proxy.limits import Descriptor, Limit, RateLimitConfig, Window, judge

log = logging.getLogger("chirp.edge.ratelimit")

KEY_PREFIX = "chirp:rl"
UNLIMITED_REMAINING = 2**32 - 1
# Keys outlive their window by this much: an edge instance whose clock lags a little still finds
# the window's counter instead of starting a fresh one.
EXPIRY_SLACK_MS = 1000
_ERRORS_TO_CATCH = (redis.RedisError, OSError)

_INCREMENT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return count
"""

Code = rls_pb2.RateLimitResponse.Code
Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


@dataclass(frozen=True)
class Hit:
    key: str
    amount: int
    expire_ms: int


class WindowCounters:
    """The rate limiter's Redis: one counter per descriptor and window."""

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._script = client.register_script(_INCREMENT)

    async def add(self, hits: Sequence[Hit]) -> list[int]:
        """Add each hit to its counter and return the new counts; one atomic script per counter,
        all in one round trip (no MULTI: counters are independent, and this way works on a cluster)."""
        calls = [([hit.key], [hit.amount, hit.expire_ms]) for hit in hits]
        return [int(count) for count in await run_script_each(self._redis, self._script, calls)]


def counter_key(domain: str, descriptor: Descriptor, window: Window) -> str:
    entries = ".".join(f"{key}_{value}" for key, value in descriptor)
    return f"{KEY_PREFIX}:{domain}:{entries}:{window.seconds}:{window.start}"


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """`config` None means limiting is off: every descriptor is OK and nothing is counted."""

    def __init__(
        self,
        config: RateLimitConfig | None,
        counters: WindowCounters,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._counters = counters
        self._clock = clock or time.time

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rls_pb2.RateLimitResponse:
        now = self._clock()
        amount = request.hits_addend or 1
        statuses = [rls_pb2.RateLimitResponse.DescriptorStatus(code=Code.OK) for _ in request.descriptors]
        counted: list[tuple[int, Limit, Window]] = []
        hits: list[Hit] = []
        config = self._config
        if config is not None and request.domain == config.domain:
            for index, proto in enumerate(request.descriptors):
                descriptor = tuple((entry.key, entry.value) for entry in proto.entries)
                limit = config.find(descriptor)
                if limit is None:
                    continue
                statuses[index].current_limit.CopyFrom(_limit_proto(limit))
                if limit.unlimited:
                    statuses[index].limit_remaining = UNLIMITED_REMAINING
                    continue
                window = Window.at(now, limit.window_seconds)
                counted.append((index, limit, window))
                hits.append(Hit(counter_key(config.domain, descriptor, window), amount, _expire_ms(window)))
        if not hits:
            return rls_pb2.RateLimitResponse(overall_code=Code.OK, statuses=statuses)
        try:
            counts = await self._counters.add(hits)
        except _ERRORS_TO_CATCH as exc:
            log.warning("rate limiting skipped, Redis failed (%s): letting the request through", exc)
            return rls_pb2.RateLimitResponse(overall_code=Code.OK, statuses=statuses)

        over: list[tuple[Limit, Window]] = []
        for (index, limit, window), count in zip(counted, counts, strict=True):
            verdict = judge(limit, count)
            status = statuses[index]
            status.code = Code.OVER_LIMIT if verdict.over_limit else Code.OK
            status.limit_remaining = verdict.remaining
            status.duration_until_reset.CopyFrom(_duration(window.reset_in))
            if verdict.over_limit:
                over.append((limit, window))
        if not over:
            return rls_pb2.RateLimitResponse(overall_code=Code.OK, statuses=statuses)
        return _over_limit(statuses, over)


def _over_limit(
    statuses: list[rls_pb2.RateLimitResponse.DescriptorStatus], over: list[tuple[Limit, Window]]
) -> rls_pb2.RateLimitResponse:
    limit, window = max(over, key=lambda pair: pair[1].reset_in)
    retry_after = retry_after_seconds(window.reset_in)
    message = f"rate limit exceeded: {limit.name or 'limit'} ({limit.describe()}); retry in {retry_after} s"
    body = status_body(
        code_pb2.RESOURCE_EXHAUSTED,
        message,
        "RATE_LIMITED",
        {"limit": limit.name or limit.describe(), "retry_after_seconds": str(retry_after)},
    )
    log.info("%s", message)
    return rls_pb2.RateLimitResponse(
        overall_code=Code.OVER_LIMIT,
        statuses=statuses,
        response_headers_to_add=[
            base_pb2.HeaderValue(key="retry-after", value=str(retry_after)),
            base_pb2.HeaderValue(key="content-type", value="application/json"),
        ],
        raw_body=body.encode(),
    )


def retry_after_seconds(reset_in: float) -> int:
    """Retry-After for a window ending in `reset_in` seconds: whole seconds, at least 1."""
    return max(1, math.ceil(reset_in))


def _limit_proto(limit: Limit) -> rls_pb2.RateLimitResponse.RateLimit:
    # The upstream message has no multiplier: the name says "300 per 3 hours" where the unit alone
    # cannot. An unlimited limit carries no unit (UNKNOWN), as in envoyproxy/ratelimit.
    name = f"{limit.name}: {limit.describe()}" if limit.name else limit.describe()
    if limit.unlimited:
        return rls_pb2.RateLimitResponse.RateLimit(name=name)
    return rls_pb2.RateLimitResponse.RateLimit(
        name=name, requests_per_unit=limit.requests_per_unit, unit=Unit.Value(limit.unit)
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(max(0, round(seconds * 1e9)))
    return duration


def _expire_ms(window: Window) -> int:
    return math.ceil(window.reset_in * 1000) + EXPIRY_SLACK_MS
