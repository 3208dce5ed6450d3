"""One job per output folder: a lock file that the job's global rank 0 holds while it runs.

Two trainers writing checkpoints into one folder would each resume from the other's files. So the
first thing rank 0 does is create `OUTPUT_DIR/run.lock` atomically (O_EXCL: of two jobs racing,
one wins), holding who holds it:

    {"host": "node07", "pid": 12345, "started": 1764417600.0, "refreshed": 1764417660.0}

The holder refreshes it at step boundaries (at most every REFRESH_SECONDS) and removes it when it
ends. A job that finds the file refuses to start while the lock is live, naming its holder:

    same host      live while that process exists
    another host   live while refreshed within STALE_SECONDS (its process cannot be seen from here)

A stale lock (a job killed with SIGKILL, a node that went away) is taken over. `force=True`
(`--force_lock`) takes over a live one: for the rare case where a lock is known to be wrong.
The other ranks of a job, on any node, never touch the lock: they are the same job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "run.lock"
REFRESH_SECONDS = 60.0
STALE_SECONDS = 600.0  # ten refreshes missed: another host's job is taken for gone


class RunLockedError(RuntimeError):
    """Another live job holds the output folder."""


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    started: float
    refreshed: float

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        age = time.time() - self.refreshed
        return f"process {self.pid} on {self.host}, started {started}, last seen {age:.0f} s ago"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    stat = Path(f"/proc/{pid}/stat")  # a zombie has ended; it only waits to be reaped
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_holder(output_dir: str | os.PathLike) -> LockHolder | None:
    """The lock's holder, or None when there is no lock (or it cannot be read: a write cut short)."""
    try:
        return LockHolder(**json.loads((Path(output_dir) / LOCK_NAME).read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def is_live(holder: LockHolder, host: str | None = None, now: float | None = None) -> bool:
    """Whether `holder` still runs: see the module docstring."""
    if holder.host == (host or socket.gethostname()):
        return _process_exists(holder.pid)
    return (now or time.time()) - holder.refreshed < STALE_SECONDS


def check_unlocked(output_dir: str | os.PathLike) -> None:
    """Raise RunLockedError when a live job holds `output_dir` (the launcher's check before starting)."""
    holder = read_holder(output_dir)
    if holder is not None and is_live(holder):
        raise RunLockedError(_refusal(output_dir, holder))


def _refusal(output_dir: str | os.PathLike, holder: LockHolder) -> str:
    return (f"{Path(output_dir)} is in use by another job ({holder.describe()}): stop it first or use another "
            f"output folder; if that job is certainly gone, pass --force_lock (another host's lock goes stale "
            f"{STALE_SECONDS:.0f} s after its last refresh)")


class RunLock:
    """The lock of one job's rank 0: `acquire()` at the start, `refresh()` now and then, `release()` at the end."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_NAME
        self.holder: LockHolder | None = None

    def acquire(self, force: bool = False) -> None:
        """Take the lock; RunLockedError names the holder of a live one (unless `force`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        mine = LockHolder(socket.gethostname(), os.getpid(), now, now)
        for _ in range(2):  # a stale lock is removed once, then created anew
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = read_holder(self.path.parent)
                if other is not None and is_live(other) and not force:
                    raise RunLockedError(_refusal(self.path.parent, other)) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(asdict(mine), f)
            self.holder = mine
            return
        raise RunLockedError(f"{self.path}: another job took the lock at the same moment; try again")

    def refresh(self, now: float | None = None) -> None:
        """Record that the holder is alive, at most every REFRESH_SECONDS (a step boundary calls it)."""
        now = now or time.time()
        if self.holder is None or now - self.holder.refreshed < REFRESH_SECONDS:
            return
        self.holder = LockHolder(self.holder.host, self.holder.pid, self.holder.started, now)
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self.holder)), encoding="utf-8")
        os.replace(tmp, self.path)  # readers never see half a file

    def release(self) -> None:
        """Remove the lock if it is still ours (a --force_lock takeover may have replaced it)."""
        if self.holder is None:
            return
        current = read_holder(self.path.parent)
        if current is not None and (current.host, current.pid, current.started) == (
                self.holder.host, self.holder.pid, self.holder.started):
            self.path.unlink(missing_ok=True)
        self.holder = None
