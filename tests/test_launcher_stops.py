"""Stops as a cluster delivers them, through the launchers: kill -9 of the launcher's process group,
SIGTERM and Ctrl-C, a second job on a busy folder, leftovers of a killed checkpoint write, and a run
killed again and again that still trains exactly as the uninterrupted one (one and two processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exps.tiny_assets import TinyAssets, write_tiny_assets
from support import REPO_ROOT
from support.processes import command_line, descendants, process_ended, wait_until
from util.run_lock import LOCK_NAME

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHON": sys.executable, "NPROC_PER_NODE": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("FOREGROUND", None)
START_TIMEOUT = 180  # seconds to a first step on a busy 2-core machine, two processes at once

# Loaded by every Python process of a launch whose PYTHONPATH holds its folder; in a training worker
# (RANK is set for torchrun's workers and for the launcher's one worker, not for the dry run) it
# kills the launcher's whole process group (kill -9, as a scheduler would) while the N-th
# checkpoint-last.pth is written: the temporary file is complete, the rename has not happened.
KILL_DURING_SAVE_HOOK = '''
import os, signal, time
if os.environ.get("RANK") and os.environ.get("KILL_AT_SAVE"):
    _replace, _saves = os.replace, []

    def _parent_of(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    def _supervisor():  # the launcher's job process: the worker's parent, or torchrun's
        pid = os.getppid()
        while b"exps/supervise.py" not in open(f"/proc/{pid}/cmdline", "rb").read():
            pid = _parent_of(pid)
        return pid

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("checkpoint-last.pth"):
            _saves.append(dst)
            if len(_saves) == int(os.environ["KILL_AT_SAVE"]):
                os.killpg(os.getpgid(_supervisor()), signal.SIGKILL)
                time.sleep(60)  # the parent-death signal ends this process before the rename
        return _replace(src, dst, *args, **kwargs)

    os.replace = replace
'''


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> TinyAssets:
    return write_tiny_assets(tmp_path_factory.mktemp("tiny_assets"))


def launch(assets: TinyAssets, output_dir: Path, flags: str, foreground: bool = False, env: dict | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess:
    """`. exps/pretrain.sh` on the tiny files from a bash script; its stdout ends with 'status N'."""
    script = (f"{'FOREGROUND=1' if foreground else ''}\n"
              f". {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {output_dir} --imagebind_path "
              f"{assets.imagebind_path} --imagebind_config imagebind/tiny.yaml --device cpu --num_workers 0 "
              f"--warmup_epochs 0 --split_epoch 1 {flags}\n"
              'echo "status $?"\n')
    return subprocess.run(["bash", "-c", script], cwd=assets.root, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout)


def status(result: subprocess.CompletedProcess) -> int:
    return int(result.stdout.rstrip().splitlines()[-1].removeprefix("status "))


def step_records(output_dir: Path) -> list[dict]:
    path = output_dir / "step_losses.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def job_tree(pid: int) -> list[int]:
    """The launcher's job process and everything it started: the worker (or torchrun and its workers)."""
    return [pid, *descendants(pid)]


def kill_group_and_wait(pid: int, tree: list[int]) -> None:
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_until(lambda: all(process_ended(p) for p in tree), 60, f"every process of {tree} to end")


def test_kill_9_of_the_launchers_process_group_leaves_no_process_writing(assets, tmp_path):
    output_dir = tmp_path / "job"
    result = launch(assets, output_dir, "--batch_size 2 --epochs 100 --log_step_losses")
    assert status(result) == 0, result.stdout + result.stderr
    pid = int((output_dir / "launcher.pid").read_text())
    wait_until(lambda: step_records(output_dir) or process_ended(pid), START_TIMEOUT, "the first step")
    tree = job_tree(pid)
    assert any("main_pretrain.py" in command_line(p) for p in tree), [command_line(p) for p in tree]
    kill_group_and_wait(pid, tree)  # the worker runs in a session of its own
    written = len(step_records(output_dir))
    time.sleep(1.0)
    assert len(step_records(output_dir)) == written  # nobody trains on


def test_a_requested_stop_saves_exits_0_and_ends_the_log_with_where_it_stopped(assets, tmp_path):
    stop = signal.SIGTERM  # SIGINT and SIGUSR1 take the same way (test_supervise.py, test_launchers.py)
    output_dir = tmp_path / "job"
    script = (f"FOREGROUND=1\n. {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {output_dir} --imagebind_path "
              f"{assets.imagebind_path} --imagebind_config imagebind/tiny.yaml --device cpu --num_workers 0 "
              "--warmup_epochs 0 --split_epoch 1 --batch_size 2 --epochs 100 --log_step_losses\n"
              'echo "status $?"\n')
    shell = subprocess.Popen(["bash", "-c", script], cwd=assets.root, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: step_records(output_dir) or shell.poll() is not None, START_TIMEOUT, "the first step")
        supervisor = next(p for p in descendants(shell.pid) if "exps/supervise.py" in command_line(p))
        os.kill(supervisor, stop)  # what `kill PID` and Ctrl-C send it
        stdout, stderr = shell.communicate(timeout=120)
    finally:
        shell.kill()
    assert stdout.rstrip().endswith("status 0"), stdout + stderr
    log = (output_dir / "output.log").read_text()
    assert "Traceback" not in log and "Traceback" not in stdout + stderr
    last = log.rstrip().splitlines()[-1]
    assert f"stopped by {stop.name} at epoch" in last and "launching again on this folder resumes" in last, last
    assert (output_dir / "checkpoint-last.pth").is_file() and not (output_dir / LOCK_NAME).exists()


def test_an_error_ends_the_terminal_and_the_log_with_the_runs_own_line(assets, tmp_path):
    output_dir = tmp_path / "job"
    # An error the pre-flight cannot foresee: the loss diverges in the worker (the flags overrule the launcher's).
    result = launch(assets, output_dir, "--batch_size 2 --epochs 1 --lr 1e30 --save_interval_steps 1",
                    foreground=True)
    assert status(result) == 1
    message = "NonFiniteLossError: the trainable tensors hold non-finite values after optimizer step 2"
    assert message in result.stdout.rstrip().splitlines()[-2]  # the last line before "status 1"
    log = (output_dir / "output.log").read_text()
    assert message in log.rstrip().splitlines()[-1]
    assert "Traceback" not in log + result.stdout + result.stderr and "ChildFailedError" not in log
    assert not (output_dir / "torchrun_report.log").exists()  # one process runs without torchrun


def test_a_second_job_on_a_busy_folder_is_refused_and_a_stale_lock_is_taken_over(assets, tmp_path):
    busy = tmp_path / "busy"
    assert status(launch(assets, busy, "--batch_size 2 --epochs 100 --log_step_losses")) == 0
    pid = int((busy / "launcher.pid").read_text())
    try:
        wait_until(lambda: step_records(busy) or process_ended(pid), START_TIMEOUT, "the first step")
        second = launch(assets, busy, "--batch_size 2 --epochs 100 --log_step_losses")
        assert status(second) == 1
        assert f"{busy} is in use by another job (process " in second.stderr and "--force_lock" in second.stderr
        assert int((busy / "launcher.pid").read_text()) == pid  # nothing of the running job was touched
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: process_ended(pid), 120, "the first job to stop")

    stale = tmp_path / "stale"
    stale.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (stale / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "started": time.time(),
                                               "refreshed": time.time()}))
    leftover = stale / ".checkpoint-last.pth.4242.0123abcd.tmp"  # a write killed midway
    leftover.write_bytes(b"half a checkpoint")
    result = launch(assets, stale, "--batch_size 4 --epochs 1", foreground=True)
    assert status(result) == 0, result.stdout + result.stderr
    assert not leftover.exists() and f"removed {leftover}" in (stale / "output.log").read_text()
    assert not (stale / LOCK_NAME).exists()  # released at the end


def losses_by_step(output_dir: Path) -> dict[int, list[float]]:
    by_step: dict[int, list[float]] = {}
    for record in step_records(output_dir):
        by_step.setdefault(record["global_step"], []).append(record["loss"])
    return by_step


@pytest.mark.parametrize("nproc", [1, 2])
def test_killed_at_seeded_moments_and_relaunched_it_trains_as_the_uninterrupted_run(assets, tmp_path, nproc):
    env = {**ENV, "NPROC_PER_NODE": str(nproc)}
    flags = f"--batch_size 2 --epochs {2 if nproc == 1 else 3} --log_step_losses --save_interval_steps 3"
    reference = tmp_path / "reference"
    result = launch(assets, reference, flags, foreground=True, env=env)
    assert status(result) == 0, result.stdout + result.stderr
    expected = {step: losses[0] for step, losses in losses_by_step(reference).items()}
    steps = len(expected)
    assert sorted(expected) == list(range(1, steps + 1))

    killed = tmp_path / "killed"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_DURING_SAVE_HOOK)
    # First moment: during the second write of checkpoint-last.pth (step 6).
    assert status(launch(assets, killed, flags, env={**env, "PYTHONPATH": str(hook), "KILL_AT_SAVE": "2"})) == 0
    pid = int((killed / "launcher.pid").read_text())
    wait_until(lambda: process_ended(pid), START_TIMEOUT, "the kill during the checkpoint write")
    wait_until(lambda: all(process_ended(p) for p in job_tree(pid)), 60, "every process to end")
    assert list(killed.glob(".checkpoint-last.pth.*.tmp")), "the kill came before or after the write"
    # Then at seeded moments: after a random number of steps of each relaunch (more than the
    # checkpoint interval, so that every relaunch gets further).
    rng = random.Random(nproc)
    for _ in range(2 if nproc == 1 else 1):  # two processes take longer to start: one seeded moment there
        done = len(step_records(killed))
        assert status(launch(assets, killed, flags, env=env)) == 0
        pid = int((killed / "launcher.pid").read_text())
        target = done + rng.randint(4, 6)
        wait_until(lambda: len(step_records(killed)) >= target or process_ended(pid), START_TIMEOUT,
                   f"{target} recorded steps")
        kill_group_and_wait(pid, job_tree(pid))
    result = launch(assets, killed, flags, foreground=True, env=env)
    assert status(result) == 0, result.stdout + result.stderr
    assert not list(killed.glob(".checkpoint-last.pth.*.tmp"))

    recorded = losses_by_step(killed)
    assert sorted(recorded) == sorted(expected)
    assert any(len(losses) > 1 for losses in recorded.values())  # some steps ran again after a kill
    for step, losses in recorded.items():
        assert losses == [expected[step]] * len(losses), (step, losses, expected[step])  # bit for bit
