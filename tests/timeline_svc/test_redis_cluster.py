"""The timelines on a real 3-master Redis Cluster (hybrid mode, celebrities above 1 follower): a
reader's keys share a slot, a read merges celebrities whose recent sets live on every node, and
a master killed without a replica leaves its readers served from PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.cluster import ClusterNode

from chirp.timeline.v1 import timeline_pb2
from chirp_app.redis_cluster import LocalRedisCluster
from chirp_app.stack import Stack, start_stack
from chirp_core.write_marks import WriteMarks
from edge_proxy.ratelimit import Hit, WindowCounters
from tests.conftest import settings_for_tests
from tests.helpers.api import Api, api_for, as_user, eventually
from tests.helpers.database import own_database
from tests.helpers.fanout import open_redis_of, store_of
from tests.helpers.graph import follow
from tests.helpers.tweets import post
from timeline_svc.cluster_storage import ClusterTimelineStore
from timeline_svc.keys import last_post_key
from timeline_svc.storage import RawPage

NAMESPACE = "cl"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    directory = Path(tempfile.mkdtemp(prefix="chirp-test-cluster-"))
    running = LocalRedisCluster(directory)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def cluster_stack(
    cluster: LocalRedisCluster, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with own_database(postgres_server, "cluster") as url:
        settings = settings_for_tests(
            url,
            tmp_path_factory.mktemp("cluster"),
            redis_url=cluster.url,
            redis_cluster=True,
            timeline_mode="hybrid",
            timeline_namespace=NAMESPACE,
            celebrity_threshold=1,
        )
        running = await start_stack(settings, with_edge=False)
        try:
            yield running
        finally:
            await running.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def cluster_api(cluster_stack: Stack) -> AsyncIterator[Api]:
    async with api_for(cluster_stack) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def store(cluster_stack: Stack) -> AsyncIterator[ClusterTimelineStore]:
    client = open_redis_of(cluster_stack.settings)
    timelines = store_of(client, namespace=NAMESPACE, cap=cluster_stack.settings.timeline_size)
    assert isinstance(timelines, ClusterTimelineStore)
    yield timelines
    await client.aclose()


async def home_ids(api: Api, reader: int) -> list[int]:
    request = timeline_pb2.GetHomeTimelineRequest(user_id=reader, limit=50)
    response = await api.timeline.GetHomeTimeline(request, metadata=as_user(reader), timeout=10)
    return [t.tweet_id for t in response.tweets]


async def pushed(store: ClusterTimelineStore, reader: int) -> list[int]:
    return [e.tweet_id for e in await store.entries(reader)]


async def celebrities_on_every_node(
    api: Api, cluster: LocalRedisCluster, store: ClusterTimelineStore, reader: int
) -> dict[int, int]:
    """node -> a celebrity the reader follows whose recent set lives on that node."""
    fan = await api.new_user()
    found: dict[int, int] = {}
    for _ in range(60):
        star = await api.new_user()
        node = cluster.node_for_key(store.recent_key(star.user_id))
        if node in found:
            continue
        await follow(api, reader, star.user_id)
        await follow(api, fan.user_id, star.user_id)
        found[node] = star.user_id
        if len(found) == 3:
            return found
    raise AssertionError(f"no celebrity on every node: {found}")


async def test_a_readers_keys_share_one_slot(cluster: LocalRedisCluster, store: ClusterTimelineStore) -> None:
    nodes = {
        cluster.node_for_key(key)
        for key in (
            store.timeline_key(42),
            store.following_key(42),
            store.versions_key(42),
            last_post_key(42),
        )
    }
    assert len(nodes) == 1
    assert {cluster.node_for_key(store.timeline_key(reader)) for reader in range(30)} == {0, 1, 2}


async def test_a_read_merges_celebrities_from_every_node(
    cluster_api: Api, cluster: LocalRedisCluster, store: ClusterTimelineStore
) -> None:
    api = cluster_api
    reader, friend = await api.new_user(), await api.new_user()
    await home_ids(api, reader.user_id)  # warm: the follows below are applied to Redis
    await follow(api, reader.user_id, friend.user_id)
    stars = await celebrities_on_every_node(api, cluster, store, reader.user_id)
    for star in stars.values():
        await eventually(lambda star=star: store.celebrity(star), bool)

    posted = [
        (await post(api, author, f"from {author}")).tweet_id for author in [friend.user_id, *stars.values()]
    ]

    expected = sorted(posted, reverse=True)
    assert await eventually(lambda: home_ids(api, reader.user_id), lambda ids: ids == expected) == expected
    # The friend's tweet was pushed into the reader's timeline; the celebrities' were merged.
    assert await pushed(store, reader.user_id) == [posted[0]]
    followed = await store.followed_celebrities(reader.user_id)
    assert followed == set(stars.values())
    nodes = zip(cluster.ports, cluster.slot_ranges, strict=True)
    layout = ", ".join(f"node {i} port {port} slots {a}-{b}" for i, (port, (a, b)) in enumerate(nodes))
    where = cluster.node_for_key(store.timeline_key(reader.user_id))
    print(f"cluster: {layout}; the reader's timeline on node {where}, a celebrity's recent set on each")


async def test_a_hybrid_read_asks_each_node_once_for_the_recent_sets_in_parallel(
    cluster_api: Api, cluster: LocalRedisCluster, store: ClusterTimelineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = cluster_api
    reader = await api.new_user()
    await home_ids(api, reader.user_id)
    stars = await celebrities_on_every_node(api, cluster, store, reader.user_id)
    for star in stars.values():
        await eventually(lambda star=star: store.celebrity(star), bool)
    posted = sorted([(await post(api, star, "famous")).tweet_id for star in stars.values()], reverse=True)
    await eventually(lambda: home_ids(api, reader.user_id), lambda ids: ids == posted)  # recent sets loaded
    pipelines: list[tuple[int, list[tuple[object, ...]], float, float]] = []
    sent = ClusterNode.execute_pipeline

    async def recorded(node: ClusterNode, commands: list[Any]) -> bool:
        started = time.monotonic()
        try:
            return await sent(node, commands)
        finally:
            pipelines.append((node.port, [c.args for c in commands], started, time.monotonic()))

    monkeypatch.setattr(ClusterNode, "execute_pipeline", recorded)

    page = await store.read(reader.user_id, max_id=0, min_id=0, want=20, merge_celebrities=True)

    assert isinstance(page, RawPage)
    assert page.ids == posted
    recent = [p for p in pipelines if any(":r:{" in str(arg) for args in p[1] for arg in args)]
    assert sorted(port for port, *_ in recent) == sorted(cluster.ports)  # one round trip per node
    assert max(start for *_, start, _ in recent) < min(end for *_, end in recent)  # all in flight at once


async def test_rate_limit_counters_and_write_marks_work_on_the_cluster(
    cluster: LocalRedisCluster, cluster_stack: Stack
) -> None:
    client = open_redis_of(cluster_stack.settings)
    try:
        counters = WindowCounters(client)
        keys = [f"test:rl:{{{n}}}:{uuid.uuid4().hex}" for n in range(12)]
        assert {cluster.node_for_key(k) for k in keys} == {0, 1, 2}
        hits = [Hit(key, 2, 60_000) for key in keys]
        assert await counters.add(hits) == [2] * len(keys)
        assert await counters.add(hits) == [4] * len(keys)
        marks = WriteMarks(client, ttl_seconds=60)
        for user in (7, 8, 9):
            await marks.mark(user, 100 + user)
            await marks.mark(user, 90)  # an older position never lowers the mark
        assert [await marks.position(user) for user in (7, 8, 9)] == [107, 108, 109]
    finally:
        await client.aclose()


# Last: it kills a node of the module's cluster.
async def test_a_killed_master_leaves_its_readers_served_from_postgresql(
    cluster_api: Api, cluster: LocalRedisCluster, cluster_stack: Stack, store: ClusterTimelineStore
) -> None:
    api = cluster_api
    # The node to kill holds neither the events stream nor the namespace's shared keys (the
    # celebrity set): without those no fan-out can go on (give their node a replica).
    critical = {
        cluster.node_for_key(cluster_stack.settings.events_stream),
        cluster.node_for_key(store.celebrities_key),
    }
    doomed = max({0, 1, 2} - critical)
    readers: list[int] = []
    authors: dict[int, int] = {}
    tweets: dict[int, list[int]] = {}
    while {cluster.node_for_key(store.timeline_key(r)) == doomed for r in readers} != {True, False}:
        # One follower each: ordinary authors, whose tweets are pushed to Redis.
        reader, author = (await api.new_user()).user_id, (await api.new_user()).user_id
        await home_ids(api, reader)
        await follow(api, reader, author)
        await eventually(
            lambda r=reader, a=author: store.cluster.hexists(store.versions_key(r), str(a)), bool
        )
        tweets[reader] = [(await post(api, author, "before")).tweet_id]
        await eventually(lambda r=reader: pushed(store, r), lambda ids, r=reader: ids == tweets[r])
        readers.append(reader)
        authors[reader] = author

    cluster.kill(doomed)

    for reader in readers:
        assert await home_ids(api, reader) == tweets[reader]
    # The fan-out goes on for the readers of the living nodes: after the outage rule's few
    # seconds of retrying, their share is written and the dead node's skipped.
    for reader in readers:
        tweets[reader].insert(0, (await post(api, authors[reader], "after")).tweet_id)
    for reader in readers:
        want = tweets[reader]
        if cluster.node_for_key(store.timeline_key(reader)) == doomed:
            assert await home_ids(api, reader) == want  # from PostgreSQL, at once
        else:
            await eventually(lambda r=reader: pushed(store, r), lambda ids, w=want: ids == w, within=30)
            assert await home_ids(api, reader) == want
