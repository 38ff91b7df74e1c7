"""Child processes of the daemon that must not outlive it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for ``SIGKILL`` when the parent dies (``PR_SET_PDEATHSIG``), then check the parent is
    still ``parent_pid`` (it may have died before the ``prctl``): exit at once when it is not.

    The signal fires when the *thread* that started this process ends: start it from a long-lived thread.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)  # nobody waits for this process any more
