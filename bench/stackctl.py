"""The benchmark's own PostgreSQL and Redis (in a temporary directory, loopback only) and the
Chirp stack it restarts per timeline mode, as `chirp up --processes N` runs it: a Supervisor of N
worker processes (the services and the edge's auth service on shared ports) against them, and one
Envoy in front of the workers, the REST gateway.

PostgreSQL preloads pg_stat_statements (set with ALTER SYSTEM in this throw-away cluster only),
so the statements per timeline read are counted, not estimated. Each mode gets a fresh copy of
the loaded database (CREATE DATABASE ... TEMPLATE) and an emptied Redis, so every mode starts
from the same data and cold timelines.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import aiohttp
import psycopg
import redis

from bench.cpu import pid_from_file, with_children
from chirp_app.embedded_pg import EmbeddedPostgres
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.envoy_process import EnvoyProcess
from chirp_app.processes import Supervisor, WorkerFailed
from chirp_core.settings import Settings

BASE_DATABASE = "bench_base"
# Ports of services the stack may have (served by each worker), given free ports when its settings
# know them.
FREE_PORT_FIELDS = ("jwks_port",)


class Infrastructure:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(root / "pg")
        self.redis = EmbeddedRedis(root / "redis")

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def database_url(self, name: str) -> str:
        return self.postgres.url(name)

    def start(self) -> None:
        self.postgres.start()
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        self.postgres.stop()
        self.postgres.start()
        self.redis.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        self.postgres.stop()

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if template:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            else:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def enable_statement_counts(self, name: str) -> None:
        with psycopg.connect(self.database_url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def flush_redis(self) -> None:
        with redis.Redis.from_url(self.redis_url) as client:
            client.flushall()

    def postgres_pids(self) -> list[int]:
        pid = pid_from_file(self.postgres.pgdata / "postmaster.pid")
        return with_children(pid) if pid else []

    def redis_pids(self) -> list[int]:
        pid = pid_from_file(self.redis.pid_file)
        return [pid] if pid else []


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free right now (a later bind can still race another program)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_free_ports(count: int, processes: int, stride: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports p whose worker ports p + i * stride (i < processes) are free
    and distinct too."""
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(1000):
        if len(chosen) == count:
            return chosen
        (first,) = free_ports(1, host)
        ports = {first + index * stride for index in range(processes)}
        if max(ports) <= 65535 and not taken & ports and all(_free(port, host) for port in ports):
            chosen.append(first)
            taken |= ports
    raise OSError(f"no {count} free ports with free worker ports")


def _free(port: int, host: str) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def consecutive_free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive free ports."""
    for _ in range(200):
        (first,) = free_ports(1, host)
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind((host, port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return first
    raise OSError(f"no {count} consecutive free ports")


def stack_settings(
    root: Path,
    database_url: str,
    redis_url: str,
    *,
    mode: str,
    threshold: int,
    overrides: dict[str, int | None],
    processes: int,
) -> Settings:
    """A stack on free ports (each worker's ports too: the base port plus the worker's number
    times the settings' worker port stride, where they have one), rate limits off, quiet logs
    (Envoy's errors only). Envoy's access log goes to a file under the data directory, as a
    production Envoy would write one."""
    known = {f.name for f in fields(Settings)}
    stride = int(getattr(Settings(), "worker_port_stride", 0)) or 1
    optional = [name for name in FREE_PORT_FIELDS if name in known]
    graph, tweets, timeline, auth, media, *others = worker_free_ports(5 + len(optional), processes, stride)
    (http,) = free_ports(1)
    settings = Settings(
        data_dir=root / "data",
        database_url=database_url,
        redis_url=redis_url,
        graph_port=graph,
        tweets_port=tweets,
        timeline_port=timeline,
        auth_port=auth,
        http_port=http,
        media_store_port=media,
        metrics_port=consecutive_free_ports(processes),
        rate_limits="off",
        log_level="WARNING",
        shutdown_grace_seconds=1.0,
        timeline_mode=mode,
        celebrity_threshold=threshold,
        envoy_admin_port=0,
        envoy_log_level="error",
        envoy_access_log=str(root / "data" / "envoy" / "access.log"),
    )
    settings = settings.with_changes(
        **{name: value for name, value in overrides.items() if value is not None}
    )
    settings = settings.with_changes(**dict(zip(optional, others, strict=True)))
    settings.validate()
    return settings


@dataclass
class RunningStack:
    """The workers and the Envoy in front of them."""

    supervisor: Supervisor
    envoy: EnvoyProcess

    @property
    def url(self) -> str:
        """The REST gateway: Envoy's listener."""
        return self.envoy.url

    @property
    def processes(self) -> int:
        return self.supervisor.processes

    def worker_pids(self) -> list[int]:
        return self.supervisor.pids()

    def envoy_pids(self) -> list[int]:
        pid = self.envoy.pid
        return [pid] if pid else []

    async def stop(self) -> None:
        """Envoy first (no new requests reach the workers), then the workers."""
        try:
            await self.envoy.stop()
        finally:
            await self.supervisor.stop()


async def start_stack(settings: Settings, processes: int) -> RunningStack:
    """Start the workers, then Envoy in front of them (its run directory under the data
    directory, its admin interface on a free port), and wait until Envoy's /healthz reports
    every upstream healthy."""
    supervisor = Supervisor(settings, processes)
    await supervisor.start()
    envoy: EnvoyProcess | None = None
    try:
        # The supervisor's settings name every worker's addresses, so Envoy balances over them all.
        envoy = EnvoyProcess(supervisor.settings, settings.data_dir / "envoy")
        await envoy.start()
        await wait_healthy(envoy.url)
    except BaseException:
        if envoy is not None:
            await envoy.stop()
        await supervisor.stop()
        raise
    return RunningStack(supervisor, envoy)


async def start_on_free_ports(
    make_settings: Callable[[], Settings], processes: int, tries: int = 3
) -> tuple[Settings, RunningStack]:
    """start_stack on settings from make_settings (fresh free ports each call), again with new
    ports when one was taken between choosing it and binding it (another program's connection
    may take any port of the ephemeral range meanwhile)."""
    for attempt in range(1, tries + 1):
        settings = make_settings()
        try:
            return settings, await start_stack(settings, processes)
        except (WorkerFailed, OSError) as exc:
            if "address already in use" not in str(exc) or attempt == tries:
                raise
            print(
                f"chirp bench: a port was taken meanwhile ({exc}); other ports", file=sys.stderr, flush=True
            )
    raise AssertionError("unreachable")


async def wait_healthy(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(base_url=url) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get("/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/healthz did not answer 200 in {within:.0f} s")
            await asyncio.sleep(0.2)
