"""Test fixtures: one real PostgreSQL per test session (embedded unless CHIRP_TEST_DATABASE_URL
names one), a fresh database in it, the whole stack in-process on port 0, and emptied tables
before every test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
import redis
import redis.cluster

from chirp_app.embedded_pg import EmbeddedPostgres
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.redis_cluster import LocalRedisCluster
from chirp_app.stack import Stack, start_stack
from chirp_core.settings import Settings
from tests.helpers.api import Api, api_for
from tests.helpers.pgbouncer import PgBouncer

SCHEMAS = ("graph", "tweets")
# With CHIRP_TEST_PGBOUNCER=1, the pgbouncer (transaction mode) in front of the test server, which
# the services of settings_for_tests go through; the tests' own queries go to the server directly.
_pgbouncer: list[PgBouncer] = []
# With CHIRP_TEST_REDIS_CLUSTER=1, a 3-master Redis Cluster of the session's own, which the
# services of settings_for_tests use (started on first use, stopped at the session's end).
_redis_cluster: list[LocalRedisCluster] = []


def session_redis_cluster() -> LocalRedisCluster | None:
    if os.environ.get("CHIRP_TEST_REDIS_CLUSTER") != "1":
        return None
    if not _redis_cluster:
        cluster = LocalRedisCluster(Path(tempfile.mkdtemp(prefix="chirp-test-cluster-")))
        cluster.start()
        _redis_cluster.append(cluster)
    return _redis_cluster[0]


@pytest.fixture(scope="session", autouse=True)
def stop_redis_cluster() -> Iterator[None]:
    yield
    for cluster in _redis_cluster:
        cluster.stop()
    _redis_cluster.clear()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database."""
    external = os.environ.get("CHIRP_TEST_DATABASE_URL")
    if external:
        with pgbouncer_in_front(external):
            yield external
        return
    # Outside pytest's temp root: each pytest session resets that root to 0700, which would lock
    # the server's system user out of a data directory another running session still uses.
    data_dir = Path(tempfile.mkdtemp(prefix="chirp-test-pg-"))
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        with pgbouncer_in_front(server.dsn):
            yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def pgbouncer_in_front(server_url: str) -> Iterator[None]:
    """With CHIRP_TEST_PGBOUNCER=1, a pgbouncer in transaction mode in front of the server."""
    if os.environ.get("CHIRP_TEST_PGBOUNCER") != "1":
        yield
        return
    bouncer = PgBouncer(server_url)
    bouncer.start()
    _pgbouncer.append(bouncer)
    try:
        yield
    finally:
        _pgbouncer.clear()
        bouncer.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    name = f"chirp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(postgres_server, dbname=name)
    yield url
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for_tests(database_url: str, data_dir: Path, **changes: object) -> Settings:
    """Every port free; CHIRP_TEST_REDIS_URL names an external Redis, CHIRP_TEST_REDIS_CLUSTER=1 the
    session's cluster, else an embedded one starts.
    With CHIRP_TEST_PGBOUNCER=1 the services reach the database through pgbouncer, preparing no
    statements (which transaction mode needs)."""
    if _pgbouncer:
        database_url = _pgbouncer[0].url(database_url)
        changes = {"db_prepare_threshold": None, **changes}
    redis_url = os.environ.get("CHIRP_TEST_REDIS_URL") or None
    cluster = session_redis_cluster()
    if cluster is not None and "redis_url" not in changes:
        redis_url = cluster.url
        changes = {"redis_cluster": True, **changes}
    if redis_url is not None and "redis_url" not in changes:
        # Stacks sharing one Redis (the session's stack, the media tests') each get their own
        # consumer group and event stream: in one group, one stack's workers would take events of
        # the other's database, and the tweet would reach no follower.
        namespace = f"chirp{uuid.uuid4().hex[:8]}"
        changes = {"timeline_namespace": namespace, "events_stream": f"{namespace}:{{events}}", **changes}
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data_dir,
        graph_port=0,
        tweets_port=0,
        timeline_port=0,
        stream_poll_seconds=0.1,
        # No metrics server unless a test asks; the fan-out workers notice a flushed Redis (their
        # consumer group gone) within a short block, and take over a dead consumer's events soon.
        metrics_port=None,
        fanout_block_seconds=0.2,
        fanout_claim_idle_seconds=1.0,
        shutdown_grace_seconds=0.5,
        # Envoy and the media store, where a test starts them, on free ports too.
        envoy_admin_port=0,
        media_store_port=0,
        jwks_port=0,
        envoy_health_check_seconds=0.5,
        # The request path's Redis deadline is tested on its own (tests/chirp_core/test_redis_breaker.py,
        # tests/e2e/faults/test_stalled_redis.py, at the default); elsewhere a busy machine must not
        # turn a slow reply into a fallback to PostgreSQL that the test did not ask for.
        redis_timeout_ms=500,
    ).with_changes(**changes)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = settings_for_tests(database_url, tmp_path_factory.mktemp("data"))
    running = await start_stack(settings, with_edge=False)
    yield running
    await running.stop()


@pytest.fixture(autouse=True)
def empty_tables(request: pytest.FixtureRequest) -> None:
    """Every test that uses the stack starts from empty tables (migrations stay applied) and an
    empty Redis: its contents are derived state, rebuilt from PostgreSQL."""
    if "stack" not in request.fixturenames and "api" not in request.fixturenames:
        return
    stack: Stack = request.getfixturevalue("stack")
    flush_redis(stack.settings)
    empty_database(request.getfixturevalue("database_url"))


def flush_redis(settings: Settings) -> None:
    """Empty the Redis of settings (every node of a cluster)."""
    assert settings.redis_url
    if settings.redis_cluster:
        with redis.cluster.RedisCluster.from_url(settings.redis_url) as cluster:
            cluster.flushdb(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        return
    with redis.Redis.from_url(settings.redis_url) as client:
        client.flushdb()


def empty_database(url: str) -> None:
    """Truncate every table of the services' schemas.

    The services' background tasks (the outbox relays) run on the test loop, which stands still
    while a synchronous fixture runs: a transaction one of them left open until its next step
    would hold TRUNCATE off forever. Such sessions (idle in transaction) are ended first; the
    relay takes a new connection and retries.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT format('%%I.%%I', table_schema, table_name) FROM information_schema.tables"
            " WHERE table_schema = ANY(%s) AND table_name <> 'schema_migrations'"
            " AND table_type = 'BASE TABLE'",
            (list(SCHEMAS),),
        ).fetchall()
        if not rows:
            return
        conn.execute("SET lock_timeout = '2s'")
        for attempt in range(5):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND state LIKE 'idle in transaction%%'"
            )
            try:
                conn.execute("TRUNCATE " + ", ".join(r[0] for r in rows) + " RESTART IDENTITY CASCADE")
                return
            except psycopg.errors.LockNotAvailable:
                if attempt == 4:
                    raise


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    """Stubs for every service of the in-process stack."""
    async with api_for(stack) as api:
        yield api


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own (the embedded one, started), stopped at the end."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
