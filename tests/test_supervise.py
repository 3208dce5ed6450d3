"""exps/supervise.py with a stand-in for torchrun: stop signals reach the workers, not torchrun;
the exit status is torchrun's; its failure report leaves the log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from support import REPO_ROOT
from support.processes import wait_until
from util.run_lock import RunLock

# A stand-in for torchrun: one worker that prints the signal it gets and exits 0; torchrun itself
# exits with its worker's status, and says so on the line torchrun uses when a worker failed.
WORKER = """
import signal, sys, time
got = []
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
    signal.signal(sig, lambda number, frame: got.append(number))
print("worker ready", flush=True)
while not got:
    time.sleep(0.01)
print("worker stopped by", signal.Signals(got[0]).name, flush=True)
"""
TORCHRUN = f"""
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", {WORKER!r}])
status = worker.wait()
if len(sys.argv) > 1:  # pretend the worker failed
    print("E0000 api.py] failed (exitcode: 1) local_rank: 0", flush=True)
    print("Traceback (most recent call last): ChildFailedError", flush=True)
    sys.exit(1)
sys.exit(status)
"""


def start(tmp_path, *extra: str, one_worker: bool = False) -> subprocess.Popen:
    job = ["--one_worker", "--", sys.executable, "-c", WORKER] if one_worker else \
        ["--", sys.executable, "-c", TORCHRUN, *extra]
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "exps" / "supervise.py"), "--log",
                             str(tmp_path / "output.log"), "--echo", *job],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP],
                         ids=lambda stop: stop.name)
def test_a_stop_signal_goes_to_the_workers_and_everything_exits_0(tmp_path, stop):
    supervisor = start(tmp_path)
    assert supervisor.stdout.readline().strip() == "worker ready"
    supervisor.send_signal(stop)  # Ctrl-C, kill PID, SLURM's warning, a closed terminal
    output, _ = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    forwarded = signal.SIGTERM if stop == signal.SIGHUP else stop
    assert f"worker stopped by {forwarded.name}" in output
    assert (tmp_path / "output.log").read_text().splitlines() == ["worker ready", f"worker stopped by {forwarded.name}"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=lambda stop: stop.name)
def test_with_one_worker_and_no_torchrun_the_stop_signal_goes_to_the_worker_itself(tmp_path, stop):
    supervisor = start(tmp_path, one_worker=True)
    assert supervisor.stdout.readline().strip() == "worker ready"
    supervisor.send_signal(stop)
    output, _ = supervisor.communicate(timeout=30)
    forwarded = signal.SIGTERM if stop == signal.SIGHUP else stop
    assert supervisor.returncode == 0 and f"worker stopped by {forwarded.name}" in output


def test_torchruns_failure_report_goes_beside_the_log_and_the_status_stays(tmp_path):
    supervisor = start(tmp_path, "fail")
    assert supervisor.stdout.readline().strip() == "worker ready"
    time.sleep(0.2)
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 1
    assert "ChildFailedError" not in output + (tmp_path / "output.log").read_text()
    assert "ChildFailedError" in (tmp_path / "torchrun_report.log").read_text()


def test_check_lock_refuses_a_folder_a_live_job_holds(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    checked = subprocess.run([sys.executable, str(REPO_ROOT / "exps" / "supervise.py"), "--check_lock", str(tmp_path)],
                             capture_output=True, text=True)
    assert checked.returncode == 1 and "is in use by another job" in checked.stderr
    lock.release()
    wait_until(lambda: not (tmp_path / "run.lock").exists(), 5, "the lock to go")
    assert subprocess.run([sys.executable, str(REPO_ROOT / "exps" / "supervise.py"), "--check_lock",
                           str(tmp_path)]).returncode == 0
