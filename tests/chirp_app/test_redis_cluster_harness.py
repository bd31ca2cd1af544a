"""The test harness's LocalRedisCluster: three real masters a cluster client writes to and reads from,
and a killed master that takes down its own slots only."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from chirp_app.child_process import ServerFailed
from chirp_app.redis_cluster import SLOTS, LocalRedisCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def doomed_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A cluster of the test's own, for a test that kills a node."""
    with LocalRedisCluster(tmp_path / "cluster") as running:
        yield running


def keys_on_every_node(cluster: LocalRedisCluster, per_node: int = 2) -> dict[int, list[str]]:
    """Keys named harness:N, `per_node` on each master."""
    found: dict[int, list[str]] = {index: [] for index in range(len(cluster.ports))}
    n = 0
    while any(len(keys) < per_node for keys in found.values()):
        key = f"harness:{n}"
        keys = found[cluster.node_for_key(key)]
        if len(keys) < per_node:
            keys.append(key)
        n += 1
    return found


def test_the_slots_are_split_in_three_contiguous_ranges(cluster: LocalRedisCluster) -> None:
    assert [cluster.node_for_slot(slot) for slot in (0, SLOTS // 3, SLOTS - 1)] == [0, 1, 2]
    assert cluster.url == cluster.urls[0] == f"redis://127.0.0.1:{cluster.ports[0]}"
    assert len(set(cluster.ports)) == 3
    assert all(cluster.alive(index) for index in range(3))
    with pytest.raises(ValueError):
        cluster.node_for_slot(SLOTS)


def test_a_cluster_client_writes_and_reads_keys_on_all_three_nodes(cluster: LocalRedisCluster) -> None:
    keys = keys_on_every_node(cluster)
    assert set(keys) == {0, 1, 2}
    with RedisCluster(host="127.0.0.1", port=cluster.ports[0], decode_responses=True) as client:
        assert len(client.get_primaries()) == 3
        for node, names in keys.items():
            for key in names:
                client.set(key, f"on {node}")
        for node, names in keys.items():
            assert [client.get(key) for key in names] == [f"on {node}"] * len(names)
    # Each key is stored on the master the harness names, and on no other.
    for node, names in keys.items():
        with redis.Redis(port=cluster.ports[node], decode_responses=True) as direct:
            assert direct.dbsize() == len(names)


def flagged_failed(cluster: LocalRedisCluster, index: int, by: int) -> bool:
    """Whether node `by` flags node `index` as failed (after cluster-node-timeout and a majority)."""
    with redis.Redis(port=cluster.ports[by], decode_responses=True) as node:
        nodes: dict[str, dict[str, object]] = node.execute_command("CLUSTER NODES")
    flags = str(nodes[f"127.0.0.1:{cluster.ports[index]}"]["flags"])
    return "fail" in flags.split(",")


def test_a_killed_master_fails_its_keys_only(doomed_cluster: LocalRedisCluster) -> None:
    cluster = doomed_cluster
    keys = keys_on_every_node(cluster, per_node=1)
    with RedisCluster(host="127.0.0.1", port=cluster.ports[0]) as client:
        for key in (k for names in keys.values() for k in names):
            client.set(key, "before")

    doomed = 1
    cluster.kill(doomed)
    assert not cluster.alive(doomed)
    assert cluster.alive(0) and cluster.alive(2)

    survivors = [index for index in range(3) if index != doomed]
    with RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", cluster.ports[index]) for index in survivors],
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    ) as client:
        for index in survivors:
            (key,) = keys[index]
            assert client.get(key) == "before"
            client.set(key, "after")
            assert client.get(key) == "after"
        (lost,) = keys[doomed]
        started = time.monotonic()
        with pytest.raises(redis.RedisError):
            client.get(lost)
        assert time.monotonic() - started < 5.0
        # Once the survivors agree the node failed, they keep serving their own slots
        # (cluster-require-full-coverage no).
        deadline = time.monotonic() + 10.0
        while not all(flagged_failed(cluster, doomed, by) for by in survivors):
            assert time.monotonic() < deadline, f"node {doomed} never flagged as failed"
            time.sleep(0.1)
        for index in survivors:
            assert client.get(keys[index][0]) == "after"
            client.set(keys[index][0], "later")
        with pytest.raises(redis.RedisError):
            client.get(lost)


def test_a_failed_start_stops_the_nodes_it_launched(tmp_path: Path) -> None:
    cluster = LocalRedisCluster(tmp_path / "cluster")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cluster.ports[2]))
        squatter.listen()
        with pytest.raises(ServerFailed, match="node 2"):
            cluster.start()
    assert not any(cluster.alive(index) for index in range(3))
