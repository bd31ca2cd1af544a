"""envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit against the real Redis, with the
limits of limits_test.yaml."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2
from edge_proxy.limits import Window
from edge_proxy.ratelimit import KEY_PREFIX, UNLIMITED_REMAINING
from tests.edge_proxy.conftest import Edge
from tests.helpers.api import eventually
from tests.helpers.envoy_calls import Code, rate_limit_request

Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


def client(kind: str) -> tuple[tuple[str, str], ...]:
    """A descriptor of limits_test.yaml for a client no other test uses."""
    return (("generic_key", kind), ("client", uuid.uuid4().hex))


async def wait_for_fresh_window(seconds: int, needed: float) -> None:
    """Sleep past the current window's end when less than `needed` seconds are left in it."""
    window = Window.at(time.time(), seconds)
    if window.reset_in < needed:
        await asyncio.sleep(window.reset_in + 0.02)


async def test_concurrent_calls_never_exceed_the_limit(edge: Edge) -> None:
    await wait_for_fresh_window(3600, needed=30)
    descriptor = client("hourly")  # 10 per hour

    responses = await asyncio.gather(
        *(edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor)) for _ in range(60))
    )

    codes = [r.overall_code for r in responses]
    assert codes.count(Code.OK) == 10
    assert codes.count(Code.OVER_LIMIT) == 50
    remaining = sorted(r.statuses[0].limit_remaining for r in responses if r.overall_code == Code.OK)
    assert remaining == list(range(10))  # each OK call saw its own count: no lost update
    keys = [k async for k in edge.redis.scan_iter(f"{KEY_PREFIX}:chirp:*{descriptor[1][1]}*")]
    [key] = keys
    assert int(await edge.redis.get(key) or 0) == 60
    assert 0 < await edge.redis.pttl(key) <= 3600 * 1000 + 1000


async def test_over_limit_answers_with_the_limit_and_time_to_reset(edge: Edge) -> None:
    await wait_for_fresh_window(3600, needed=30)
    descriptor = client("hourly")
    for _ in range(10):
        ok = await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor))
        assert ok.overall_code == Code.OK
        assert not ok.response_headers_to_add and not ok.raw_body

    response = await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor))

    assert response.overall_code == Code.OVER_LIMIT
    [status] = response.statuses
    assert status.code == Code.OVER_LIMIT
    assert status.limit_remaining == 0
    assert status.current_limit.requests_per_unit == 10
    assert status.current_limit.unit == Unit.HOUR
    assert status.current_limit.name == "hourly: 10 per hour"
    reset = status.duration_until_reset.ToNanoseconds() / 1e9
    assert 0 < reset <= 3600
    headers = {h.key: h.value for h in response.response_headers_to_add}
    assert 1 <= int(headers["retry-after"]) <= 3600
    assert abs(int(headers["retry-after"]) - reset) <= 1
    body = json.loads(response.raw_body)
    assert body["code"] == 8
    assert body["details"][0]["reason"] == "RATE_LIMITED"


async def test_every_descriptor_is_judged_and_one_over_limit_is_enough(edge: Edge) -> None:
    hourly, blocked, unknown = client("hourly"), client("blocked"), (("generic_key", "nothing"), ("x", "y"))

    response = await edge.rate_limits.ShouldRateLimit(rate_limit_request(hourly, blocked, unknown))

    assert response.overall_code == Code.OVER_LIMIT
    first, second, third = response.statuses
    assert (first.code, first.limit_remaining) == (Code.OK, 9)
    assert (second.code, second.current_limit.requests_per_unit) == (Code.OVER_LIMIT, 0)
    assert third.code == Code.OK and not third.HasField("current_limit")


async def test_unlimited_and_unknown_domain_count_nothing(edge: Edge) -> None:
    unlimited = await edge.rate_limits.ShouldRateLimit(rate_limit_request((("generic_key", "free"),)))
    assert unlimited.overall_code == Code.OK
    assert unlimited.statuses[0].limit_remaining == UNLIMITED_REMAINING

    other = rate_limit_request(client("blocked"))
    other.domain = "not-chirp"
    assert (await edge.rate_limits.ShouldRateLimit(other)).overall_code == Code.OK


async def test_hits_addend_counts_several_hits(edge: Edge) -> None:
    descriptor = client("hourly")
    await wait_for_fresh_window(3600, needed=30)
    first = await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor, hits=7))
    second = await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor, hits=4))
    assert (first.overall_code, first.statuses[0].limit_remaining) == (Code.OK, 3)
    assert second.overall_code == Code.OVER_LIMIT


async def test_the_count_resets_with_the_window(edge: Edge) -> None:
    descriptor = client("per_second")  # 3 per second
    await wait_for_fresh_window(1, needed=0.8)
    answers = [await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor)) for _ in range(4)]
    assert [a.overall_code for a in answers] == [Code.OK, Code.OK, Code.OK, Code.OVER_LIMIT]
    reset = answers[-1].statuses[0].duration_until_reset.ToNanoseconds() / 1e9
    assert 0 < reset <= 1

    await asyncio.sleep(reset + 0.02)
    fresh = await edge.rate_limits.ShouldRateLimit(rate_limit_request(descriptor))
    assert fresh.overall_code == Code.OK
    assert fresh.statuses[0].limit_remaining == 2


async def test_redis_down_lets_everything_through_then_limits_again(
    edge: Edge, embedded_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = client("blocked")  # 0 per minute: over the limit whenever Redis counts
    assert (
        await edge.rate_limits.ShouldRateLimit(rate_limit_request(blocked))
    ).overall_code == Code.OVER_LIMIT

    embedded_redis.stop()
    try:
        started = time.monotonic()
        response = await edge.rate_limits.ShouldRateLimit(rate_limit_request(blocked))
        elapsed = time.monotonic() - started
    finally:
        embedded_redis.start()

    assert response.overall_code == Code.OK
    assert response.statuses[0].code == Code.OK
    assert elapsed < 2.0
    assert "Redis failed" in caplog.text
    # Counted again once the circuit breaker lets a call through to the restarted Redis.
    await eventually(
        lambda: edge.rate_limits.ShouldRateLimit(rate_limit_request(blocked)),
        lambda again: again.overall_code == Code.OVER_LIMIT,
        within=edge.settings.redis_breaker_open_seconds + 5,
    )
