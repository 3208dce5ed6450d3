"""A worker ends with the process that started it, so that no orphan goes on training.

torchrun starts each worker in a session of its own, so killing the launcher's process group
(what `scancel`, an out-of-memory killer or `kill -9 -PGID` do) reaches torchrun but not the
workers: they would go on writing checkpoints into a folder that the next job resumes from.
Linux's parent-death signal closes that gap: after `die_with_parent()`, the kernel sends the
process SIGKILL when its parent ends, however it ends. (A clean stop never comes this way: the
launcher asks the workers to save and stop, and torchrun waits for them.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` when the parent process ends; exit now if it already has.

    Returns False where the platform has no such signal (not Linux): nothing changes there.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        logger.warning("could not ask for a parent-death signal (errno %d)", ctypes.get_errno())
        return False
    # The parent may have ended between our start and the call above: then nobody will send it.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
