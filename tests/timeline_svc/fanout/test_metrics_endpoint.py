"""GET /metrics: the Prometheus text of a timeline server that has fanned out and served reads."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from chirp_core.metrics import serve_metrics
from tests.helpers.api import Api, eventually
from tests.helpers.graph import follow
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline


def fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


async def test_the_endpoint_shows_lag_read_latency_by_path_cache_ratio_and_subscribers(
    api: Api, timelines: StartTimeline
) -> None:
    timeline = await timelines("hybrid")
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await timeline.home_ids(alice.user_id)  # cold, then warm

    # The follow event applied first: applied after the tweet, it would copy the tweet in itself,
    # and the tweet's push would find nothing to add (the outbox may be polled, through pgbouncer).
    async def follows_applied() -> float:
        return timeline.metrics.value("chirp_fanout_events_total", {"type": "followed"})

    await eventually(follows_applied, lambda n: n >= 1)
    tweet = await post(api, bob.user_id, "measured")
    await eventually(lambda: timeline.home_ids(alice.user_id), lambda ids: ids == [tweet.tweet_id])
    call = await timeline.stream(alice.user_id)
    server = await serve_metrics(timeline.metrics, "127.0.0.1", 0)
    try:

        async def subscribers() -> float:
            return timeline.metrics.value("chirp_stream_subscribers", {"transport": "pubsub"})

        await eventually(subscribers, lambda n: n == 1)
        content_type, text = await asyncio.to_thread(fetch, server.url)
    finally:
        call.cancel()
        await server.stop()

    assert content_type.startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("chirp_fanout_lag_seconds_count", (("path", "push"),))] >= 1
    assert samples[("chirp_timeline_read_seconds_count", (("path", "cold"),))] == 1
    assert samples[("chirp_timeline_read_seconds_count", (("path", "warm"),))] >= 1
    assert 0.0 <= samples[("chirp_tweet_cache_hit_ratio", ())] <= 1.0
    assert samples[("chirp_tweet_cache_lookups_total", (("result", "hit"),))] >= 1
    assert samples[("chirp_stream_subscribers", (("transport", "pubsub"),))] == 1
