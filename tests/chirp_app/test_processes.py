"""`chirp up --processes 2`: the workers share every port, answer /healthz, a crashed worker is
reported and replaced, and SIGTERM stops everything (workers, Redis, PostgreSQL).

The waits are generous upper bounds, not timings: on a machine busy with other work, starting or
stopping a worker can take many seconds. The test polls without blocking the event loop, which
the session's in-process stack shares, and drains the subprocess's output all along, so a full
pipe can never stall it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from chirp_app.processes import check_shared_ports, worker_settings
from chirp_core.settings import Settings
from tests.helpers.api import free_port_run, free_ports

READY = re.compile(r"chirp: ready in [\d.]+s at (?P<url>http://\S+) .* processes=2")
# Upper bounds for a busy machine; a healthy run takes a few seconds for each.
START_SECONDS = 180.0
STOP_SECONDS = 180.0


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


def healthz_now(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def healthz(url: str) -> int:
    return await asyncio.to_thread(healthz_now, url)


async def wait_until(condition: Callable[[], bool], what: str, within: float = START_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)


def test_worker_settings_give_each_worker_its_own_node_and_metrics_port() -> None:
    settings = Settings(node_id=4, metrics_port=9100)
    assert [worker_settings(settings, i).node_id for i in range(3)] == [4, 5, 6]
    assert worker_settings(settings, 2).metrics_port == 9102
    assert worker_settings(settings.with_changes(metrics_port=None), 1).metrics_port is None
    with pytest.raises(ValueError, match="1023"):
        worker_settings(settings.with_changes(node_id=1023), 1)


def test_shared_ports_must_be_fixed() -> None:
    with pytest.raises(ValueError, match="--auth-port"):
        check_shared_ports(Settings(auth_port=0), 2)
    check_shared_ports(Settings(auth_port=0), 1)
    # Envoy's port is not shared: one Envoy serves all the workers.
    check_shared_ports(Settings(http_port=0), 2)


@pytest.mark.skipif(
    os.environ.get("CHIRP_TEST_DATABASE_URL") is not None, reason="exercises the embedded database"
)
async def test_two_processes_share_the_ports_survive_a_crash_and_stop_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "chirp-data"
    graph, tweets, timeline, auth, http = free_ports(5)
    metrics = free_port_run(2)  # worker 1 serves its metrics on the next port
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
    env["CHIRP_SHUTDOWN_GRACE_SECONDS"] = "1"
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
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace")
            output.append(line)
            if (match := READY.search(line)) and not ready.done():
                ready.set_result(match["url"])
        if not ready.done():
            ready.set_exception(AssertionError("chirp up exited before it was ready:\n" + "".join(output)))

    reader = asyncio.ensure_future(drain())
    try:
        url = await asyncio.wait_for(ready, START_SECONDS)
        assert url == f"http://127.0.0.1:{http}"
        parent = psutil.Process(process.pid)
        workers = workers_of(parent)
        assert len(workers) == 2
        [envoy] = [child for child in parent.children() if child.name() == "envoy"]
        assert listening_pids(http) == {envoy.pid}
        assert listening_pids(timeline) == {w.pid for w in workers}
        assert listening_pids(auth) == {w.pid for w in workers}
        assert await healthz(url) == 200

        crashed = workers[0].pid
        workers[0].kill()
        await wait_until(lambda: crashed not in listening_pids(timeline), "the killed worker to go")
        await wait_until(lambda: len(listening_pids(timeline)) == 2, "a new worker listening")
        await wait_until(lambda: healthz_now(url) == 200, "Envoy to see every upstream healthy")
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
    assert re.search(rf"chirp: worker \d \(pid {crashed}\) exited", text), text
    leftovers = [
        f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}"
        for p in psutil.process_iter(["cmdline", "cwd"])
        if str(data_dir.resolve()) in " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
    ]
    assert not leftovers, "SIGTERM left processes of the stack running:\n" + "\n".join(leftovers)
