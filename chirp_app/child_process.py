"""What every server `chirp up` starts shares: it dies with us, so no orphan keeps a port."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

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


class ServerFailed(RuntimeError):
    """An embedded server did not start, or something other than our server answers its port."""
