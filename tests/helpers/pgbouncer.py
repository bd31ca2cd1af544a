"""A real pgbouncer in transaction mode in front of the test PostgreSQL: its own configuration in a
temporary directory, a free port of 127.0.0.1, every database of the server behind it.

In transaction mode a server connection belongs to a client for one transaction only, so the
clients must keep no session state: no prepared statements (Debian's pgbouncer 1.18 does not track
them; psycopg's prepare_threshold must be None), no SET or advisory lock outside a transaction, no
LISTEN. `CHIRP_TEST_PGBOUNCER=1` runs the services of the tests through one (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chirp_app.child_process import stop_child
from tests.helpers.api import free_port
from tests.helpers.replica import as_server_user, give_to_server_user

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class PgBouncerUnavailable(Exception):
    """No pgbouncer binary here (the message says how to install one)."""


class PgBouncer:
    """pgbouncer on 127.0.0.1:port, pool_mode = transaction, in front of `server_url`'s server."""

    def __init__(self, server_url: str) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.access(binary, os.X_OK):
            raise PgBouncerUnavailable("no pgbouncer on PATH or in /usr/sbin: apt-get install -y pgbouncer")
        self._binary = binary
        self._server = conninfo_to_dict(server_url)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        # pgbouncer refuses to run as root: as root, it runs as the embedded PostgreSQL's user.
        self._dir = Path(tempfile.mkdtemp(prefix="chirp-test-pgbouncer-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self._dir / "pgbouncer.log"

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the server behind) through pgbouncer."""
        return make_conninfo(database_url, host=self.host, port=str(self.port))

    def start(self) -> None:
        self._write_config()
        # Through setpriv, as the standbys are (tests/helpers/replica.py): safe beside gRPC's threads.
        self._process = subprocess.Popen(
            as_server_user([self._binary, "-q", str(self._dir / "pgbouncer.ini")], "TERM"),
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            # SIGTERM: pgbouncer closes its connections and exits at once.
            stop_child(process, signal.SIGTERM, "pgbouncer", STOP_TIMEOUT_SECONDS)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _write_config(self) -> None:
        user = str(self._server.get("user") or "postgres")
        server = f"host={self._server.get('host') or '127.0.0.1'} port={self._server.get('port') or 5432}"
        if self._server.get("password"):
            server += f" password={self._server['password']}"
        (self._dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = {server}\n"
            "\n[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "pool_mode = transaction\n"
            # Clients are trusted on 127.0.0.1; pgbouncer still wants their user in the auth file.
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'userlist.txt'}\n"
            f"admin_users = {user}\n"
            # The services' pools (up to 10 connections each, several stacks per test session).
            "max_client_conn = 1000\n"
            "default_pool_size = 40\n"
            f"logfile = {self.log_file}\n"
            f"pidfile = {self._dir / 'pgbouncer.pid'}\n"
        )
        (self._dir / "userlist.txt").write_text(f'"{user}" ""\n')
        give_to_server_user(self._dir, *self._dir.iterdir())

    def _wait_ready(self) -> None:
        """Until a query goes through pgbouncer to the server and pgbouncer says transaction mode."""
        admin = make_conninfo(self.url("dbname=pgbouncer"), user=str(self._server.get("user") or "postgres"))
        through = self.url(make_conninfo(**{k: str(v) for k, v in self._server.items()}))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise RuntimeError(f"pgbouncer exited with {code}\n{self._log_tail()}")
            try:
                with psycopg.connect(
                    through, connect_timeout=2, autocommit=True, prepare_threshold=None
                ) as conn:
                    conn.execute("SELECT 1")
                with psycopg.connect(
                    admin, connect_timeout=2, autocommit=True, prepare_threshold=None
                ) as conn:
                    modes = {str(row[1]) for row in conn.execute("SHOW CONFIG") if row[0] == "pool_mode"}
                assert modes == {"transaction"}, f"pgbouncer's pool_mode is {modes}"
                return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"pgbouncer not ready after {START_TIMEOUT_SECONDS:.0f} s\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        return ""
