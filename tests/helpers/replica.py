"""A real streaming replica for the tests: `pg_basebackup -R` of the test server, made with the
embedded PostgreSQL's own binaries into a temporary directory, started as a hot standby on a free
port of 127.0.0.1.

The primary needs wal_level=replica, a free WAL sender and a pg_hba.conf line that lets the
replication connection in; the embedded server has all three from PostgreSQL's and initdb's
defaults (trust for 127.0.0.1). An external server may lack them, or run another major version:
then `ReplicaUnavailable` says why, and the tests that need a replica skip with that reason.
"""

from __future__ import annotations

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

from chirp_app.child_process import ServerFailed
from chirp_app.embedded_pg import POSTGRES_BIN_PATH, SYSTEM_USER, EmbeddedPostgres

BASEBACKUP_TIMEOUT_SECONDS = 120.0


class ReplicaUnavailable(Exception):
    """No replica of this server can be made here (the message says why)."""


class Standby:
    """A hot standby of `primary_url`'s server. start() copies and starts it; stop() removes it."""

    def __init__(self, primary_url: str) -> None:
        self.primary_url = primary_url
        self._dir = Path(tempfile.mkdtemp(prefix="chirp-test-replica-"))
        self._user = SYSTEM_USER if os.geteuid() == 0 else None
        if self._user is not None:
            owner = pwd.getpwnam(self._user)
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
        self.server = EmbeddedPostgres(self._dir)

    def url(self, database: str) -> str:
        """The standby's postgresql:// URL for `database`, as the primary's user."""
        params = conninfo_to_dict(self.primary_url)
        user = quote(str(params.get("user", "postgres")), safe="")
        password = params.get("password")
        login = f"{user}:{quote(str(password), safe='')}" if password else user
        return f"postgresql://{login}@{self.server.host}:{self.server.port}/{quote(database, safe='')}"

    def start(self) -> None:
        if not (self.server.pgdata / "PG_VERSION").exists():
            self._base_backup()
        self.server.start()

    def kill(self) -> None:
        """kill -9 of the standby's postmaster."""
        pid = self.server.pid
        assert pid is not None, "the standby is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.server.running:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby's postmaster {pid} outlived SIGKILL for 30 s")
            time.sleep(0.02)

    def restart(self, timeout: float = 60.0) -> None:
        """Start it again after kill(): until the killed postmaster's last backends have gone
        (PostgreSQL will not start beside them), then as a standby again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.server.start()
                return
            except ServerFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

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

    def _base_backup(self) -> None:
        params = conninfo_to_dict(self.primary_url)
        if not params.get("host"):
            raise ReplicaUnavailable(f"{self.primary_url} names no host for a replication connection")
        try:
            result = subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_basebackup"),
                    "--dbname",
                    make_conninfo(self.primary_url, connect_timeout="10"),
                    "--pgdata",
                    str(self.server.pgdata),
                    "--write-recovery-conf",
                    "--wal-method=stream",
                    "--checkpoint=fast",
                    "--no-sync",
                    "--no-password",
                ],
                user=self._user,
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
                f"pg_basebackup of {params.get('host')}:{params.get('port')} failed: {result.stderr.strip()}"
            )
