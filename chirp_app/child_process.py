"""What every server `chirp up` starts shares: it dies with us, so no orphan keeps a port."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("chirp.processes")

PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: the child, forked from a process whose other threads (gRPC's) may
# hold the loader's or the allocator's locks, must do no more than the one system call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that has the kernel send `sig` to the child when the thread that started it
    dies (Linux; elsewhere nothing). Start servers from the event loop's thread, which lives as long
    as the process, not from a pool thread that may exit first."""
    signal_number = int(sig)

    def set_parent_death_signal() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal_number)

    return set_parent_death_signal


def launch_options(
    argv: list[str], sig: signal.Signals, user: str | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The command line and the extra Popen arguments that start `argv` as `user` (None: as we are),
    dying with us by `sig`.

    Through setpriv(1) (util-linux) where the machine has it: Popen then needs no preexec_fn and no
    user=, so Python starts the program with vfork and exec alone. Otherwise it fork()s, and in a
    process where gRPC runs, gRPC's fork handlers then run in the copy and can crash it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        extra: dict[str, Any] = {"preexec_fn": die_with_parent(sig)}
        if user is not None:
            extra["user"] = user
        return argv, extra
    # The death signal is set after the user change (which would clear it), as setpriv does.
    prefix = [setpriv, f"--pdeathsig={sig.name.removeprefix('SIG')}"]
    if user is not None and pwd.getpwnam(user).pw_uid != os.geteuid():
        owner = pwd.getpwnam(user)
        prefix += [f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"]
    return [*prefix, "--", *argv], {}


class ServerFailed(RuntimeError):
    """An embedded server did not start, or something other than our server answers its port."""


def stop_child(process: subprocess.Popen[bytes], sig: signal.Signals, name: str, timeout: float) -> None:
    """Send `sig` (the server's own clean shutdown) and wait; SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, timeout)
            process.kill()
            process.wait()
    log.info("%s stopped", name)


def free_port(host: str) -> int:
    """A port free on `host` now (the server started on it may still lose a race for it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
