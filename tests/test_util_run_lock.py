"""util/run_lock.py: one job per output folder; a live holder is named, a stale one is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from util.run_lock import LOCK_NAME, REFRESH_SECONDS, STALE_SECONDS, RunLock, RunLockedError, check_unlocked, read_holder


def write_lock(folder, host: str, pid: int, refreshed: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"host": host, "pid": pid, "started": refreshed - 5,
                                                "refreshed": refreshed}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_job_takes_the_folder_and_gives_it_back(tmp_path):
    lock = RunLock(tmp_path / "out")
    lock.acquire()
    holder = read_holder(tmp_path / "out")
    assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
    with pytest.raises(RunLockedError, match=rf"in use by another job \(process {os.getpid()} on "):
        RunLock(tmp_path / "out").acquire()
    with pytest.raises(RunLockedError, match="--force_lock"):
        check_unlocked(tmp_path / "out")
    lock.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    check_unlocked(tmp_path / "out")  # free again


def test_a_lock_of_a_process_that_ended_on_this_host_is_stale(tmp_path):
    write_lock(tmp_path, socket.gethostname(), dead_pid(), time.time())
    check_unlocked(tmp_path)
    lock = RunLock(tmp_path)
    lock.acquire()
    assert read_holder(tmp_path).pid == os.getpid()


def test_another_hosts_lock_is_live_until_it_misses_its_refreshes(tmp_path):
    write_lock(tmp_path, "elsewhere", 1, time.time() - 30)
    with pytest.raises(RunLockedError, match="process 1 on elsewhere"):
        RunLock(tmp_path).acquire()
    write_lock(tmp_path, "elsewhere", 1, time.time() - STALE_SECONDS - 1)
    RunLock(tmp_path).acquire()
    assert read_holder(tmp_path).host == socket.gethostname()


def test_force_takes_a_live_lock_and_the_displaced_holder_does_not_remove_the_new_one(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    write_lock(tmp_path, "elsewhere", 1, time.time())
    time.sleep(0.01)  # another start time: another holder, even in this one process
    second = RunLock(tmp_path)
    second.acquire(force=True)
    first.release()  # no longer its lock: left alone
    assert read_holder(tmp_path) == second.holder
    second.release()
    assert read_holder(tmp_path) is None


def test_refresh_rewrites_the_time_at_most_every_interval(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    started = read_holder(tmp_path).refreshed
    lock.refresh(now=started + REFRESH_SECONDS / 2)
    assert read_holder(tmp_path).refreshed == started
    lock.refresh(now=started + REFRESH_SECONDS)
    assert read_holder(tmp_path).refreshed == started + REFRESH_SECONDS
    assert [path.name for path in tmp_path.iterdir()] == [LOCK_NAME]  # no temporary file left
