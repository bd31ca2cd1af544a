"""`chirp up` never uses a server it did not start: a port held by another Redis or PostgreSQL
stops it with a message naming the port, before anything is served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chirp_app.embedded_pg import EmbeddedPostgres
from chirp_app.embedded_redis import EmbeddedRedis
from tests.helpers.chirp_process import free_ports


def chirp_up_fails(data_dir: Path, *options: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
    graph, tweets, timeline, auth, http = (str(p) for p in free_ports(5))
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "chirp_app.cli", "up", "--data-dir", str(data_dir)),
            *("--graph-port", graph, "--tweets-port", tweets, "--timeline-port", timeline),
            *("--auth-port", auth, "--http-port", http, "--metrics-port", "off", *options),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert "chirp: ready" not in output, output
    assert "Traceback" not in output, output
    return output


def test_a_redis_port_held_by_another_redis_is_refused(tmp_path: Path) -> None:
    other = EmbeddedRedis(tmp_path / "other")
    other.start()
    try:
        output = chirp_up_fails(tmp_path / "data", "--redis-port", str(other.port))
        # Ours either fails to bind, or the other server answers first and is found out.
        assert f"127.0.0.1:{other.port}" in output, output
        assert "another Redis" in output or "Address already in use" in output, output
        import redis

        with redis.Redis(port=other.port) as client:
            assert client.keys() == [], "chirp wrote into a Redis it did not start"
    finally:
        other.stop()


def test_a_postgres_port_held_by_another_postgres_is_refused(tmp_path: Path) -> None:
    other = EmbeddedPostgres(tmp_path / "other")
    other.start()
    try:
        output = chirp_up_fails(tmp_path / "data", "--postgres-port", str(other.port))
        assert str(other.port) in output, output
        import psycopg

        with psycopg.connect(other.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'chirp'").fetchone()
        assert row == (0,), "chirp created its database in a PostgreSQL it did not start"
    finally:
        other.stop()
