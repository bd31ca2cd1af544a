"""`chirp up --processes 2`: each worker listens on ports of its own; Envoy lists both workers in
every cluster (LEAST_REQUEST) and load reaches both; a stopped worker (SIGSTOP) leaves the rotation
while requests go on succeeding, and comes back after SIGCONT; a killed worker is reported and
started again on its ports and serves again; SIGTERM stops everything (workers, Redis, PostgreSQL).

The waits are generous upper bounds, not timings: on a machine busy with other work, starting or
stopping a worker can take many seconds. The test polls without blocking the event loop, which
the session's in-process stack shares, and drains the subprocess's output all along, so a full
pipe can never stall it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from chirp_app.cli import main
from chirp_app.processes import check_worker_ports, mesh_settings, worker_ports, worker_settings
from chirp_core.settings import Settings
from tests.helpers.api import free_port_run
from tests.helpers.chirp_process import free_worker_ports

READY = re.compile(
    r"chirp: ready in [\d.]+s at (?P<url>http://\S+) .*processes=2 envoy-admin=(?P<admin>http://\S+)"
)
# Upper bounds for a busy machine; a healthy run takes a few seconds for each.
START_SECONDS = 180.0
STOP_SECONDS = 180.0
# A worker is out of Envoy's rotation within about two health-check intervals (1 s each) plus a
# timeout; this bound only keeps a broken run from hanging.
EJECT_SECONDS = 60.0
STRIDE = 100
GRPC_CLUSTERS = ("graph", "tweets", "timeline", "edge")
READS = 200


def test_worker_settings_give_each_worker_its_own_node_and_metrics_port() -> None:
    settings = Settings(node_id=4, metrics_port=9100)
    assert [worker_settings(settings, i).node_id for i in range(3)] == [4, 5, 6]
    assert worker_settings(settings, 2).metrics_port == 9102
    assert worker_settings(settings.with_changes(metrics_port=None), 1).metrics_port is None
    with pytest.raises(ValueError, match="1023"):
        worker_settings(settings.with_changes(node_id=1023), 1)


def test_each_worker_has_ports_of_its_own_and_every_worker_is_named_to_all() -> None:
    settings = Settings(
        graph_port=6000,
        tweets_port=6001,
        timeline_port=6002,
        auth_port=6003,
        media_store_port=6004,
        metrics_port=6005,
        worker_port_stride=10,
    )
    plan = worker_ports(settings, 3)
    assert [ports["graph_port"] for ports in plan] == [6000, 6010, 6020]
    assert [ports["media_store_port"] for ports in plan] == [6004, 6014, 6024]
    mesh = mesh_settings(settings, plan)
    assert mesh.graph_addr == "127.0.0.1:6000,127.0.0.1:6010,127.0.0.1:6020"
    assert mesh.auth_addr == "127.0.0.1:6003,127.0.0.1:6013,127.0.0.1:6023"
    worker = worker_settings(mesh, 1, plan[1])
    assert (worker.graph_port, worker.timeline_port, worker.metrics_port) == (6010, 6012, 6006)
    assert worker.graph_addr == mesh.graph_addr, "a worker calls every worker, itself included"


def test_a_port_0_gives_each_worker_a_free_port_of_its_own() -> None:
    settings = Settings(
        graph_port=0, tweets_port=0, timeline_port=0, auth_port=0, media_store_port=0, metrics_port=None
    )
    plan = worker_ports(settings, 2)
    every = [port for ports in plan for port in ports.values() if port]
    assert len(every) == len(set(every)), plan
    assert all(ports[name] > 0 for ports in plan for name in ("graph_port", "auth_port", "media_store_port"))
    # Without the local media store there is no media server, and no port for it.
    assert (
        "media_store_port"
        not in worker_ports(settings.with_changes(media_store="s3", media_s3_bucket="b"), 2)[0]
    )


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_the_default_ports_serve_several_workers(processes: int) -> None:
    check_worker_ports(Settings(), processes)


def test_worker_ports_that_collide_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"worker 1's --graph-port and worker 0's --tweets-port .* 6100"):
        check_worker_ports(Settings(graph_port=6000, tweets_port=6100), 2)
    with pytest.raises(ValueError, match="port 65551"):
        check_worker_ports(Settings(graph_port=65451), 2)
    with pytest.raises(ValueError, match=">= 1"):
        check_worker_ports(Settings(), 0)
    check_worker_ports(Settings(graph_port=6000, tweets_port=6100), 1)


def test_chirp_up_refuses_colliding_worker_ports_and_bad_addresses_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [name for name in os.environ if name.startswith("CHIRP_")]:
        monkeypatch.delenv(name)
    up = ["up", "--data-dir", str(tmp_path / "data"), "--processes", "2"]
    assert main([*up, "--graph-port", "6000", "--tweets-port", "6100"]) == 2
    assert "would both be port 6100" in capsys.readouterr().err
    monkeypatch.setenv("CHIRP_GRAPH_ADDR", "graph:50051,graph2:50051")
    assert main(up) == 2
    assert "CHIRP_GRAPH_ADDR: several addresses must be IP addresses of one family" in capsys.readouterr().err
    monkeypatch.setenv("CHIRP_GRAPH_ADDR", "10.0.0.5:50051,10.0.0.6")
    assert main(up) == 2
    assert "CHIRP_GRAPH_ADDR: '10.0.0.6' is not host:port" in capsys.readouterr().err
    assert not (tmp_path / "data").exists(), "nothing started"


# The two-process run.


def workers_of(parent: psutil.Process) -> list[psutil.Process]:
    """The supervisor's live worker processes (a killed one is a zombie until reaped)."""
    found = []
    for child in parent.children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def listening_pids(port: int) -> set[int]:
    found = set()
    for proc in psutil.process_iter():
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    found.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def http_json(url: str, body: dict[str, Any] | None = None, token: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def status_of(url: str, token: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def hosts(admin: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Envoy's /clusters: cluster -> endpoint (host:port) -> {"healthy": bool, "rq_total": int}."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for cluster in http_json(f"{admin}/clusters?format=json")["cluster_statuses"]:
        endpoints = found.setdefault(cluster["name"], {})
        for host in cluster.get("host_statuses", []):
            address = host["address"]["socket_address"]
            stats = {stat["name"]: int(stat.get("value", 0)) for stat in host.get("stats", [])}
            health = host.get("health_status", {})
            healthy = health.get("eds_health_status") == "HEALTHY" and not any(
                value is True for key, value in health.items() if key.startswith("failed")
            )
            endpoints[f"{address['address']}:{address['port_value']}"] = {
                "healthy": healthy,
                "rq_total": stats.get("rq_total", 0),
            }
    return found


def lb_policies(admin: str) -> dict[str, str]:
    policies = {}
    for config in http_json(f"{admin}/config_dump?resource=static_clusters")["configs"]:
        cluster = config["cluster"]
        policies[cluster["name"]] = cluster.get("lb_policy", "ROUND_ROBIN")
    return policies


def timeline_reads(metrics_url: str) -> float:
    """The worker's home-timeline reads so far (its chirp_timeline_read_seconds histogram)."""
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chirp_timeline_read_seconds_count")
    )


async def wait_until(condition: Callable[[], bool], what: str, within: float = START_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.mark.skipif(
    os.environ.get("CHIRP_TEST_DATABASE_URL") is not None, reason="exercises the embedded database"
)
async def test_two_processes_balance_survive_a_stop_and_a_crash_and_stop_cleanly() -> None:
    # Outside pytest's temporary root, which another pytest run may lock down (0700) while
    # PostgreSQL, running as its own user, still needs to reach its directory.
    data_dir = Path(tempfile.mkdtemp(prefix="chirp-processes-")) / "chirp-data"
    graph, tweets, timeline, auth, http, jwks = free_worker_ports(6, 2, STRIDE)
    metrics = free_port_run(2)  # worker 1 serves its metrics on the next port
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
    env["CHIRP_SHUTDOWN_GRACE_SECONDS"] = "1"
    env["CHIRP_RATE_LIMITS"] = "off"
    env["CHIRP_JWKS_PORT"] = str(jwks)
    ports = ["--graph-port", graph, "--tweets-port", tweets, "--timeline-port", timeline]
    ports += ["--auth-port", auth, "--http-port", http, "--metrics-port", metrics]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "chirp_app.cli", "up", "--processes", "2", "--data-dir", str(data_dir)),
        *("--log-level", "WARNING", *(str(arg) for arg in ports)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    output: list[str] = []
    ready: asyncio.Future[re.Match[str]] = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace")
            output.append(line)
            if (match := READY.search(line)) and not ready.done():
                ready.set_result(match)
        if not ready.done():
            ready.set_exception(AssertionError("chirp up exited before it was ready:\n" + "".join(output)))

    reader = asyncio.ensure_future(drain())
    try:
        started = await asyncio.wait_for(ready, START_SECONDS)
        url, admin = started["url"], started["admin"]
        assert url == f"http://127.0.0.1:{http}"
        parent = psutil.Process(process.pid)
        workers = workers_of(parent)
        assert len(workers) == 2
        [envoy] = [child for child in parent.children() if child.name() == "envoy"]
        assert listening_pids(http) == {envoy.pid}
        # Worker i on each port + i * STRIDE, no port shared.
        by_index = [listening_pids(timeline + index * STRIDE) for index in range(2)]
        assert all(len(pids) == 1 for pids in by_index) and set.union(*by_index) == {w.pid for w in workers}
        for port in (graph, tweets, auth, jwks):
            assert [listening_pids(port + index * STRIDE) for index in range(2)] == by_index

        base = {"graph": graph, "tweets": tweets, "timeline": timeline, "edge": auth}
        endpoints = {
            name: [f"127.0.0.1:{port + index * STRIDE}" for index in range(2)] for name, port in base.items()
        }
        seen = await asyncio.to_thread(hosts, admin)
        for name in GRPC_CLUSTERS:
            assert sorted(seen[name]) == sorted(endpoints[name]), seen[name]
        policies = await asyncio.to_thread(lb_policies, admin)
        assert {name: policies[name] for name in GRPC_CLUSTERS} == dict.fromkeys(
            GRPC_CLUSTERS, "LEAST_REQUEST"
        )

        def every_endpoint(index: int, healthy: bool) -> Callable[[], bool]:
            def check() -> bool:
                now = hosts(admin)
                return all(now[name][endpoints[name][index]]["healthy"] == healthy for name in GRPC_CLUSTERS)

            return check

        for index in range(2):
            await wait_until(every_endpoint(index, True), f"worker {index} healthy in Envoy")

        # A reader who follows an author with a few tweets.
        api = url
        for handle in ("reader", "author"):
            await asyncio.to_thread(
                http_json, f"{api}/users", {"handle": handle, "password": "a long password"}
            )
        token = {
            handle: (
                await asyncio.to_thread(
                    http_json, f"{api}/sessions", {"handle": handle, "password": "a long password"}
                )
            )
            for handle in ("reader", "author")
        }
        reader_id, author_id = token["reader"]["user_id"], token["author"]["user_id"]
        follow = {"follower_id": reader_id, "followee_id": author_id}
        await asyncio.to_thread(http_json, f"{api}/follow", follow, token["reader"]["token"])
        for number in range(3):
            tweet = {"user_id": author_id, "content": f"tweet {number}"}
            await asyncio.to_thread(http_json, f"{api}/tweets", tweet, token["author"]["token"])
        read_url = f"{api}/timeline?user_id={reader_id}&limit=20"

        def reads(count: int) -> list[int]:
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(lambda _: status_of(read_url, token["reader"]["token"]), range(count)))

        def served(index: int) -> int:
            return int(hosts(admin)["timeline"][endpoints["timeline"][index]]["rq_total"])

        metrics_urls = [f"http://127.0.0.1:{int(metrics) + index}/metrics" for index in range(2)]
        before = [await asyncio.to_thread(timeline_reads, u) for u in metrics_urls]
        envoy_before = [await asyncio.to_thread(served, index) for index in range(2)]
        statuses = await asyncio.to_thread(reads, READS)
        assert statuses == [200] * READS, statuses
        after = [await asyncio.to_thread(timeline_reads, u) for u in metrics_urls]
        envoy_after = [await asyncio.to_thread(served, index) for index in range(2)]
        # Both workers serve: each did at least a tenth of the reads (LEAST_REQUEST spreads them
        # about evenly; with shared ports a few connections could leave one worker nearly idle).
        for index in range(2):
            assert after[index] - before[index] >= READS / 10, (before, after)
            assert envoy_after[index] - envoy_before[index] >= READS / 10, (envoy_before, envoy_after)

        # SIGSTOP: the worker stops answering; its health checks time out and it leaves every
        # cluster's rotation; reads go on succeeding on the other one.
        stopped_pid = next(iter(by_index[1]))
        stopped = psutil.Process(stopped_pid)
        stopped.suspend()
        try:
            began = time.monotonic()
            await wait_until(
                every_endpoint(1, False), "the stopped worker to leave the rotation", EJECT_SECONDS
            )
            print(
                f"\nthe stopped worker left every cluster's rotation "
                f"{time.monotonic() - began:.1f}s after SIGSTOP"
            )
            assert await asyncio.to_thread(status_of, f"{url}/healthz") == 200, (
                "one worker down is not Envoy down"
            )
            statuses = await asyncio.to_thread(reads, READS // 2)
            assert statuses == [200] * (READS // 2), statuses
        finally:
            stopped.resume()
        await wait_until(every_endpoint(1, True), "the resumed worker back in the rotation", EJECT_SECONDS)
        resumed_before = await asyncio.to_thread(served, 1)

        def resumed_serves() -> bool:
            statuses = reads(READS // 10)
            assert statuses == [200] * (READS // 10), statuses
            return served(1) - resumed_before >= READS / 20

        began = time.monotonic()
        await wait_until(resumed_serves, "reads to reach the resumed worker again", EJECT_SECONDS)
        print(f"reads reached the resumed worker again {time.monotonic() - began:.1f}s after it was healthy")

        # kill -9: the supervisor reports it and starts it again, on the same ports; once healthy
        # in Envoy it serves again.
        crashed = next(iter(by_index[0]))
        psutil.Process(crashed).kill()
        await wait_until(lambda: crashed not in listening_pids(timeline), "the killed worker to go")
        await wait_until(lambda: len(listening_pids(timeline)) == 1, "a new worker listening on its port")
        [restarted] = listening_pids(timeline)
        assert restarted != crashed and restarted in {w.pid for w in workers_of(parent)}
        for port in (graph, tweets, auth):
            assert listening_pids(port) == {restarted}
        await wait_until(every_endpoint(0, True), "the restarted worker healthy in Envoy")
        restarted_before = await asyncio.to_thread(served, 0)
        metrics_before = await asyncio.to_thread(timeline_reads, metrics_urls[0])
        statuses = await asyncio.to_thread(reads, READS // 2)
        assert statuses == [200] * (READS // 2), statuses
        assert await asyncio.to_thread(served, 0) - restarted_before >= READS / 20
        assert await asyncio.to_thread(timeline_reads, metrics_urls[0]) > metrics_before
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.wait_for(reader, 30)
    text = "".join(output)
    assert process.returncode == 0, text
    assert re.search(rf"chirp: worker 0 \(pid {crashed}\) exited", text), text
    leftovers = [
        f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}"
        for p in psutil.process_iter(["cmdline", "cwd"])
        if str(data_dir.resolve()) in " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
    ]
    assert not leftovers, "SIGTERM left processes of the stack running:\n" + "\n".join(leftovers)
    shutil.rmtree(data_dir.parent, ignore_errors=True)
