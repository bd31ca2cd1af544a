"""What every server `chirp up` starts shares: it dies with us, so no orphan keeps a port."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that has the kernel send `sig` to the child when the thread that started it
    dies (Linux; elsewhere nothing). Start servers from the event loop's thread, which lives as long
    as the process, not from a pool thread that may exit first."""

    def set_parent_death_signal() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))

    return set_parent_death_signal


class ServerFailed(RuntimeError):
    """An embedded server did not start, or something other than our server answers its port."""
