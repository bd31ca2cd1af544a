"""`chirp up --processes N`: one PostgreSQL, one Redis and one Envoy, and N worker processes that
each run the whole mesh (graph, tweets, timeline, the edge services and the media store), so one
machine's cores all serve.

Each worker listens on ports of its own (worker_ports): worker i on each configured port plus
i * settings.worker_port_stride (default 100: graph 50051, 50151, 50251, ...), or, where the port
is 0, on a free port picked for it at start. A worker keeps its ports across restarts, so
Envoy's static config stays valid: each of its clusters lists every worker's endpoint, sends
each request to the less busy of two workers picked at random (LEAST_REQUEST: per request, not
per connection, as Envoy holds a few long-lived HTTP/2 connections), takes a worker out of
rotation when two gRPC health checks in a row fail (dead, or stuck: no answer within 1 s) or its
calls keep failing (outlier detection), and puts it back once a check passes. Requests a worker
had already taken when it stopped wait for their deadline.
The services call each other the same way: settings.graph_addr and the others list every
worker's address, and each client balances round robin over the healthy ones
(chirp_core.rpc.downstream_channel). No port is shared: one another process holds is an error.

Each worker is its own Snowflake node (settings.node_id + index) and serves its metrics, when
enabled, on settings.metrics_port + index. The supervisor reports a worker that exits on its own
and starts it again after a growing backoff, at most MAX_RESTARTS times within
RESTART_WINDOW_SECONDS; past that it stops everything and `chirp up` exits non-zero. SIGINT /
SIGTERM stop Envoy, the workers (SIGTERM, SIGKILL after the shutdown grace plus
STOP_MARGIN_SECONDS), then Redis, then PostgreSQL. The embedded PostgreSQL and Redis are kept
running too (chirp_app.keeper), and every server dies with this process (die_with_parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from chirp_app import event_loop
from chirp_app.keeper import BACKOFF_SECONDS
from chirp_core.logs import configure_logging
from chirp_core.rpc import channel_target
from chirp_core.settings import Settings

log = logging.getLogger("chirp.processes")

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 120.0
STOP_MARGIN_SECONDS = 10.0
# The ports every worker has of its own (one per server it runs), each with the setting that lists
# where every worker has it.
WORKER_PORTS: Mapping[str, str] = {
    "graph_port": "graph_addr",
    "tweets_port": "tweets_addr",
    "timeline_port": "timeline_addr",
    "auth_port": "auth_addr",
    "media_store_port": "media_store_addr",
    # The graph service's JWKS endpoint (the public keys Envoy checks access tokens with).
    "jwks_port": "jwks_addr",
}


class WorkerFailed(RuntimeError):
    """A worker exited before it was ready, or kept crashing."""

    def __init__(self, index: int, exitcode: int | None, detail: str = "") -> None:
        super().__init__(f"worker {index} exited with code {exitcode}{': ' + detail if detail else ''}")
        self.index = index
        self.exitcode = exitcode


def _own_ports(settings: Settings) -> list[str]:
    """The WORKER_PORTS a worker listens on (the media store's only with the local store)."""
    return [name for name in WORKER_PORTS if name != "media_store_port" or settings.media_store == "local"]


def check_worker_ports(settings: Settings, processes: int) -> None:
    """The fixed ports of `processes` workers (port + index * stride) must be valid and distinct,
    also from Envoy's and the metrics ports: a clear error before anything starts."""
    if processes < 1:
        raise ValueError("--processes must be >= 1")
    stride = settings.worker_port_stride
    taken: dict[int, str] = {}

    def claim(port: int, what: str) -> None:
        if port > 65535:
            raise ValueError(f"{what} would be port {port}: lower the port or CHIRP_WORKER_PORT_STRIDE")
        if port in taken:
            raise ValueError(
                f"{what} and {taken[port]} would both be port {port}: choose ports further apart "
                f"than {processes} workers x CHIRP_WORKER_PORT_STRIDE ({stride})"
            )
        taken[port] = what

    for name in ("http_port", "envoy_admin_port", "embedded_postgres_port", "embedded_redis_port"):
        if getattr(settings, name):
            claim(getattr(settings, name), "--" + name.replace("_", "-"))
    for index in range(processes):
        for name in _own_ports(settings):
            if getattr(settings, name):
                claim(
                    getattr(settings, name) + index * stride, f"worker {index}'s --{name.replace('_', '-')}"
                )
        if settings.metrics_port:
            claim(settings.metrics_port + index, f"worker {index}'s --metrics-port")


def worker_ports(settings: Settings, processes: int) -> list[dict[str, int]]:
    """Each worker's own ports, fixed for the whole run (a restarted worker gets them again):
    port + index * settings.worker_port_stride, or a free port for each worker where it is 0."""
    from chirp_app.stack import free_port

    check_worker_ports(settings, processes)
    stride = settings.worker_port_stride
    plan: list[dict[str, int]] = []
    picked: set[int] = set()
    for index in range(processes):
        ports: dict[str, int] = {}
        for name in _own_ports(settings):
            port = getattr(settings, name)
            if port:
                ports[name] = port + index * stride
                continue
            while (port := free_port(settings.host)) in picked:
                pass
            picked.add(port)
            ports[name] = port
        plan.append(ports)
    return plan


def mesh_settings(settings: Settings, plan: list[dict[str, int]]) -> Settings:
    """The settings every worker (and the Envoy in front) shares: graph_addr and the others list
    every worker's address, in worker order."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return settings.with_changes(
        **{
            WORKER_PORTS[name]: ",".join(f"{host}:{ports[name]}" for ports in plan)
            for name in _own_ports(settings)
        }
    )


def worker_settings(settings: Settings, index: int, ports: Mapping[str, int] | None = None) -> Settings:
    """The settings of worker `index`: its own Snowflake node, metrics port and `ports` (from
    worker_ports; `settings` come from mesh_settings)."""
    node_id = settings.node_id + index
    if node_id > 1023:
        raise ValueError(f"CHIRP_NODE_ID + worker index must stay <= 1023 (worker {index}: {node_id})")
    metrics_port = settings.metrics_port
    if metrics_port:
        metrics_port += index
    return settings.with_changes(node_id=node_id, metrics_port=metrics_port, **(ports or {}))


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    ready: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """N worker processes, each on ports of its own, against settings.database_url and
    settings.redis_url (both required: the caller starts PostgreSQL and Redis once for all
    workers). `settings` (mesh_settings) name every worker's address: Envoy's config comes from
    them."""

    def __init__(self, settings: Settings, processes: int) -> None:
        if not settings.database_url or not settings.redis_url:
            raise ValueError("the workers need settings.database_url and settings.redis_url")
        self.ports = worker_ports(settings, processes)
        self.settings = mesh_settings(settings, self.ports)
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._restarts: deque[float] = deque()
        self._failed: asyncio.Future[WorkerFailed] | None = None
        self._stopping = False
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> dict[str, str]:
        """Where the workers listen, every worker's address of each service as one gRPC target
        (chirp_core.rpc.channel_target): graph, tweets, timeline, auth."""
        targets = {
            "graph": self.settings.graph_target,
            "tweets": self.settings.tweets_target,
            "timeline": self.settings.timeline_target,
            "auth": self.settings.auth_target,
        }
        return {name: channel_target(target) for name, target in targets.items()}

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values() if w.process.pid is not None]

    async def start(self) -> None:
        """Start every worker and wait until each serves; on a failure stop them all and raise."""
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        try:
            for index in range(self.processes):
                self._spawn(index)
            for worker in list(self._workers.values()):
                await self._wait_ready(worker)
        except BaseException:
            await self.stop()
            raise

    async def wait_failed(self) -> WorkerFailed:
        """Returns once a worker crashed more often than the restart budget allows."""
        assert self._failed is not None, "start() first"
        return await asyncio.shield(self._failed)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for a clean exit, SIGKILL what is left after the grace."""
        self._stopping = True
        for restart in self._pending:
            restart.cancel()
        loop = asyncio.get_running_loop()
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(worker.process.sentinel)
            if worker.process.is_alive():
                worker.process.terminate()
        await asyncio.gather(*(self._reap(worker) for worker in workers))

    async def _reap(self, worker: _Worker) -> None:
        """Wait for a terminated worker; past the grace plus the margin, kill it."""
        await asyncio.to_thread(
            worker.process.join, self.settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        )
        if worker.process.is_alive():
            log.warning(
                "worker %d (pid %s) did not stop in time; killing it", worker.index, worker.process.pid
            )
            worker.process.kill()
            await asyncio.to_thread(worker.process.join)
        elif worker.process.exitcode not in (0, -signal.SIGTERM):
            log.warning("worker %d stopped with code %s", worker.index, worker.process.exitcode)
        worker.conn.close()

    def _spawn(self, index: int) -> None:
        parent_end, child_end = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(worker_settings(self.settings, index, self.ports[index]), index, child_end),
            name=f"chirp-worker-{index}",
        )
        process.start()
        child_end.close()
        worker = _Worker(index, process, parent_end)
        self._workers[index] = worker
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, worker)

    async def _wait_ready(self, worker: _Worker) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not worker.conn.poll(0):
            if not worker.process.is_alive() and not worker.conn.poll(0):
                raise WorkerFailed(worker.index, worker.process.exitcode, "before it was ready")
            if time.monotonic() > deadline:
                raise WorkerFailed(worker.index, None, f"not ready after {READY_TIMEOUT_SECONDS:.0f} s")
            await asyncio.sleep(0.05)
        try:
            message: dict[str, str] = worker.conn.recv()
        except EOFError:
            raise WorkerFailed(worker.index, worker.process.exitcode, "before it was ready") from None
        if "error" in message:
            raise WorkerFailed(worker.index, worker.process.exitcode, message["error"])
        worker.ready = message

    def _exited(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(worker.process.sentinel)
        if self._stopping or self._workers.get(worker.index) is not worker:
            return
        worker.process.join(1)  # it has exited (its sentinel closed): this only reaps it
        code = worker.process.exitcode
        log.error("worker %d (pid %s) exited with code %s", worker.index, worker.process.pid, code)
        print(
            f"chirp: worker {worker.index} (pid {worker.process.pid}) exited with code {code}",
            file=sys.stderr,
        )
        worker.conn.close()
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW_SECONDS:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            if self._failed is not None and not self._failed.done():
                self._failed.set_result(WorkerFailed(worker.index, code, "too many restarts"))
            return
        delay = BACKOFF_SECONDS[min(len(self._restarts), len(BACKOFF_SECONDS) - 1)]
        self._restarts.append(now)
        restart = loop.create_task(self._restart(worker.index, delay))
        self._pending.add(restart)
        restart.add_done_callback(self._pending.discard)

    async def _restart(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping:
            return
        self._spawn(index)
        try:
            await self._wait_ready(self._workers[index])
        except WorkerFailed as failure:
            log.error("%s", failure)
            return
        log.warning("worker %d restarted (pid %s)", index, self._workers[index].process.pid)


def _worker_main(settings: Settings, index: int, conn: multiprocessing.connection.Connection) -> None:
    # Ctrl-C reaches the whole process group; the supervisor answers it by stopping us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level)
    try:
        event_loop.run(_serve_worker(settings, index, conn), settings)
    except Exception as exc:
        log.exception("worker %d failed", index)
        with contextlib.suppress(OSError, BrokenPipeError):
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


async def _serve_worker(settings: Settings, index: int, conn: multiprocessing.connection.Connection) -> None:
    from chirp_app.stack import start_stack

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stack = await start_stack(settings, with_envoy=False, peers=True)
    event_loop.quiet_collector()
    try:
        conn.send(
            {
                "graph": stack.address("graph"),
                "tweets": stack.address("tweets"),
                "timeline": stack.address("timeline"),
                "auth": stack.edge.settings.auth_target if stack.edge else "",
            }
        )
        # The supervisor's end of the pipe closes when it dies: stop rather than live on orphaned.
        loop.add_reader(conn.fileno(), stop.set)
        log.info("worker %d serving (node %d)", index, settings.node_id)
        await stop.wait()
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        await stack.stop()


def _announce(line: str) -> None:
    print(line, flush=True)


async def run(settings: Settings, processes: int, *, announce: Callable[[str], None] = _announce) -> int:
    """`chirp up --processes N` until SIGINT / SIGTERM: 0 on a clean stop, 1 when the workers
    kept crashing. Starts the embedded PostgreSQL and Redis unless settings name external ones."""
    from chirp_app.envoy_process import EnvoyProcess
    from chirp_app.stack import EmbeddedServers, start_postgres, start_redis

    check_worker_ports(settings, processes)
    began = time.monotonic()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    database_url, postgres = await start_postgres(settings)
    embedded = EmbeddedServers(postgres, None)
    supervisor: Supervisor | None = None
    envoy: EnvoyProcess | None = None
    try:
        redis_url, redis_server = await start_redis(settings)
        embedded = EmbeddedServers(postgres, redis_server).watch()
        settings = settings.with_changes(database_url=database_url, redis_url=redis_url)
        supervisor = Supervisor(settings, processes)
        await supervisor.start()
        settings = supervisor.settings
        envoy = EnvoyProcess(settings, settings.data_dir / "envoy")
        await envoy.start()
        where = {
            "graph": settings.graph_addr,
            "tweets": settings.tweets_addr,
            "timeline": settings.timeline_addr,
        }
        endpoints = " ".join(f"{name}={addresses}" for name, addresses in where.items())
        announce(
            f"chirp: ready in {time.monotonic() - began:.2f}s at {envoy.url} "
            f"({'embedded' if postgres else 'external'} PostgreSQL, "
            f"{'embedded' if redis_server else 'external'} Redis) {endpoints} processes={processes} "
            f"envoy-admin={envoy.admin_url}"
        )
        failed = asyncio.ensure_future(supervisor.wait_failed())
        signalled = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait({failed, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if failed in done:
            log.error("stopping: %s", failed.result())
            return 1
        failed.cancel()
        log.info("stopping")
        return 0
    finally:
        if envoy is not None:
            await envoy.stop()
        if supervisor is not None:
            await supervisor.stop()
        await embedded.stop()
