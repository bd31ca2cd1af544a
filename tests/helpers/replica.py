"""A real streaming replica for the tests: `pg_basebackup -R` of the test server, made with the
embedded PostgreSQL's own binaries into a temporary directory, started as a hot standby on a free
port of 127.0.0.1.

The primary needs wal_level=replica, a free WAL sender and a pg_hba.conf line that lets the
replication connection in; the embedded server has all three from PostgreSQL's and initdb's
defaults (trust for 127.0.0.1). An external server may lack them, or run another major version:
then `ReplicaUnavailable` says why, and the tests that need a replica skip with that reason.

The tests start standbys after gRPC's threads are running, so every program here is started
through setpriv (the server's user when we are root, a parent-death signal) with no preexec_fn
and no user= for subprocess: Python then starts it with vfork and exec alone. A fork() would run
gRPC's fork handlers in the child, which crash it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chirp_app.child_process import stop_child
from chirp_app.embedded_pg import POSTGRES_BIN_PATH, SYSTEM_USER
from tests.helpers.api import free_port

BASEBACKUP_TIMEOUT_SECONDS = 120.0
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


class ReplicaUnavailable(Exception):
    """No replica of this server can be made here (the message says why)."""


def as_server_user(argv: list[str], death_signal: str) -> list[str]:
    """`argv` through setpriv: as the embedded PostgreSQL's user when we are root (PostgreSQL and
    pgbouncer refuse root), sent `death_signal` (e.g. "INT") by the kernel when we die."""
    prefix = ["setpriv", f"--pdeathsig={death_signal}"]
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SYSTEM_USER)
        prefix += [f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"]
    return [*prefix, "--", *argv]


def give_to_server_user(*paths: Path) -> None:
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SYSTEM_USER)
        for path in paths:
            os.chown(path, owner.pw_uid, owner.pw_gid)


class Standby:
    """A hot standby of `primary_url`'s server. start() copies and starts it; stop() removes it."""

    def __init__(self, primary_url: str) -> None:
        self.primary_url = primary_url
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self._dir = Path(tempfile.mkdtemp(prefix="chirp-test-replica-"))
        give_to_server_user(self._dir)
        self.pgdata = self._dir / "standby"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """The standby's postgresql:// URL for `database`, as the primary's user."""
        params = conninfo_to_dict(self.primary_url)
        user = quote(str(params.get("user", "postgres")), safe="")
        password = params.get("password")
        login = f"{user}:{quote(str(password), safe='')}" if password else user
        return f"postgresql://{login}@{self.host}:{self.port}/{quote(database, safe='')}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Copy the primary (the first time) and start the standby; until it answers queries."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._base_backup()
        with (self._dir / "server.log").open("ab") as server_log:
            self._process = subprocess.Popen(
                as_server_user(
                    [
                        str(POSTGRES_BIN_PATH / "postgres"),
                        *("-D", str(self.pgdata), "-h", self.host, "-p", str(self.port), "-k", ""),
                        *("-c", "max_connections=200"),
                    ],
                    "INT",
                ),
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def kill(self) -> None:
        """kill -9 of the standby's postmaster (setpriv's process: it exec'd the postmaster)."""
        assert self._process is not None, "the standby is not running"
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)

    def restart(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start it again after kill(): until the killed postmaster's last backends have gone
        (PostgreSQL will not start beside them), then as a standby again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop_server()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _stop_server(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, signal.SIGINT, "standby PostgreSQL", STOP_TIMEOUT_SECONDS)

    def wait_replayed(self, database: str, timeout: float = 30.0) -> None:
        """Until the standby has replayed the primary's WAL as of now."""
        with psycopg.connect(self.primary_url, autocommit=True, connect_timeout=5) as primary:
            row = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as standby:
            while True:
                done = standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
                if done and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the standby has not replayed {row[0]} after {timeout:.0f} s")
                time.sleep(0.02)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if not self.running:
                code = None if self._process is None else self._process.returncode
                self._process = None
                raise RuntimeError(f"the standby exited with {code}\n{self._log_tail()}")
            with contextlib.suppress(psycopg.OperationalError):
                with psycopg.connect(self.url("postgres"), connect_timeout=2, autocommit=True) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                assert row == (True,), "the copy started as a primary, not a standby"
                return
            if time.monotonic() > deadline:
                self._stop_server()
                raise RuntimeError(
                    f"the standby is not ready after {START_TIMEOUT_SECONDS:.0f} s\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self._dir / "server.log").read_text(errors="replace").splitlines()[-20:])
        return ""

    def _base_backup(self) -> None:
        params = conninfo_to_dict(self.primary_url)
        if not params.get("host"):
            raise ReplicaUnavailable(f"{self.primary_url} names no host for a replication connection")
        if shutil.which("setpriv") is None:
            raise ReplicaUnavailable("no setpriv (util-linux) to start the standby's programs with")
        ours = _binaries_major_version()
        with psycopg.connect(self.primary_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        theirs = int(row[0]) // 10000 if row else 0
        if theirs != ours:
            raise ReplicaUnavailable(
                f"the server is PostgreSQL {theirs} and the embedded binaries {ours}:"
                " a streaming replica needs the same major version"
            )
        argv = [
            str(POSTGRES_BIN_PATH / "pg_basebackup"),
            *("--dbname", make_conninfo(self.primary_url, connect_timeout="10")),
            *("--pgdata", str(self.pgdata)),
            *(
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
                "--no-password",
            ),
        ]
        try:
            result = subprocess.run(
                as_server_user(argv, "KILL"),
                capture_output=True,
                text=True,
                timeout=BASEBACKUP_TIMEOUT_SECONDS,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise ReplicaUnavailable(
                f"pg_basebackup did not finish in {BASEBACKUP_TIMEOUT_SECONDS:.0f} s"
            ) from None
        if result.returncode != 0:
            raise ReplicaUnavailable(
                f"pg_basebackup of {params.get('host')}:{params.get('port')} failed"
                f" (exit {result.returncode}): {result.stderr.strip()}"
            )


def _binaries_major_version() -> int:
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[-1].split(".")[0])  # "postgres (PostgreSQL) 18.6"
