"""exps/pretrain.sh and exps/finetune.sh, sourced from bash with the tiny files, on the CPU.

The launchers are run with `.` from the user's shell, so besides training they must leave that
shell as it was: alive, with its variables, functions, options and folder unchanged, whatever
happened. Each test writes a bash script that snapshots the shell's state before and after
sourcing a launcher; the test compares the snapshots.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.startup import run as time_startup
from exps.tiny_assets import TinyAssets, write_tiny_assets
from support import REPO_ROOT
from support.processes import process_ended, wait_until

ENV = {**os.environ, "PYTHON": sys.executable, "NPROC_PER_NODE": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("FOREGROUND", None)

# Everything of the shell a sourced script could change, less what bash changes by itself.
SNAPSHOT = r"""
snapshot() {
    { declare -p | grep -vE '^declare -[-a-zA-Z]* (BASH_ARGC|BASH_ARGV|BASH_LINENO|BASH_SOURCE|BASH_COMMAND|BASH_SUBSHELL|FUNCNAME|PIPESTATUS|_|RANDOM|SRANDOM|SECONDS|LINENO|EPOCHREALTIME|EPOCHSECONDS|BASHPID)='
      set +o; shopt -p; declare -F; trap -p; pwd; umask; } > "$1"
}
set -u -o pipefail
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> TinyAssets:
    return write_tiny_assets(tmp_path_factory.mktemp("tiny_assets"))


def tiny_flags(assets: TinyAssets) -> str:
    return (f"--imagebind_path {assets.imagebind_path} --device cpu --num_workers 0 --batch_size 4 "
            "--epochs 1 --warmup_epochs 0")


def run_bash(script: str, cwd: Path, tmp_path: Path, env: dict | None = None, timeout: float = 180):
    path = tmp_path / "script.sh"
    path.write_text(SNAPSHOT + script)
    return subprocess.run(["bash", str(path)], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout)


def assert_unchanged(tmp_path: Path, before: str, *afters: str) -> None:
    expected = (tmp_path / before).read_text()
    for after in afters:
        assert (tmp_path / after).read_text() == expected, f"the shell changed: compare {before} and {after}"


def test_both_launchers_train_attached_and_leave_the_shell_as_it_was(assets, tmp_path):
    # Relative paths, typed in the assets folder: they must mean the same to the training process.
    script = f"""
FOREGROUND=1
snapshot {tmp_path}/before
. {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {tmp_path}/pre {tiny_flags(assets)} \
    --imagebind_config imagebind/tiny.yaml --split_epoch 1 --blr 0.5
echo "pretrain status $?"
snapshot {tmp_path}/after_pretrain
. {REPO_ROOT}/exps/finetune.sh llama {tmp_path}/pre/checkpoint-last.pth finetune.yaml {tmp_path}/ft {tiny_flags(assets)}
echo "finetune status $?"
snapshot {tmp_path}/after_finetune
echo "shell alive"
"""
    result = run_bash(script, assets.root, tmp_path)
    assert "pretrain status 0" in result.stdout, result.stdout + result.stderr
    assert "finetune status 0" in result.stdout, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("shell alive")
    assert_unchanged(tmp_path, "before", "after_pretrain", "after_finetune")
    for phase in ("pre", "ft"):
        log = (tmp_path / phase / "output.log").read_text()
        # The command, then its output. One process runs alone: torchrun's start would cost seconds.
        assert f"WORLD_SIZE=1 LOCAL_WORLD_SIZE=1 {sys.executable} -u {REPO_ROOT}/main_" in log.splitlines()[0]
        assert "torch.distributed.run" not in log
        assert "training done: 1 epochs" in log
        assert (tmp_path / phase / "checkpoint-1.pth").is_file()  # the state after epoch 1


def test_a_background_job_stops_on_slurms_signal_and_a_relaunch_resumes_it(assets, tmp_path):
    output_dir = tmp_path / "job"
    launch = (f". {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {output_dir} {tiny_flags(assets)} "
              "--imagebind_config imagebind/tiny.yaml --split_epoch 1 --batch_size 2 --epochs 3 --log_step_losses")
    script = f"""
snapshot {tmp_path}/before
{launch}
echo "status $?"
snapshot {tmp_path}/after
"""
    result = run_bash(script, assets.root, tmp_path)
    assert "status 0" in result.stdout and "Started main_pretrain.py in the background" in result.stdout, result.stderr
    # The pre-flight's plan, printed before anything started: 24 pictures, 2 a step, 3 epochs.
    assert "starts afresh: the adapter initialised as the published code does" in result.stdout
    assert "each epoch: about 24 samples in 12 optimizer steps of 2 x 1 x 1 samples; 3 epochs" in result.stdout
    assert_unchanged(tmp_path, "before", "after")
    pid = int((output_dir / "launcher.pid").read_text())
    assert f"kill {pid}" in result.stdout
    losses = output_dir / "step_losses.jsonl"
    wait_until(lambda: losses.exists() and losses.stat().st_size > 0 or process_ended(pid), 120, "the first step")
    os.kill(pid, signal.SIGUSR1)  # to the launcher's job process, which passes it on to the worker
    wait_until(lambda: process_ended(pid), 120, "the job to stop")
    log = (output_dir / "output.log").read_text()
    assert "stopped by SIGUSR1" in log, log
    assert "Traceback" not in log and "launching again on this folder resumes" in log.rstrip().splitlines()[-1]
    stopped = torch.load(output_dir / "checkpoint-last.pth", map_location="cpu", weights_only=True)
    assert 0 < stopped["global_step"] < 36

    relaunch = run_bash(f"FOREGROUND=1\n{launch}\necho \"status $?\"\n", assets.root, tmp_path)
    assert "status 0" in relaunch.stdout, relaunch.stdout + relaunch.stderr
    # Attached, one process is its own pre-flight: the run says where it resumes, in the terminal and the log.
    resumes = f"resumes from {output_dir / 'checkpoint-last.pth'}: {stopped['global_step']} optimizer steps done"
    assert resumes in relaunch.stdout and "--dry_run" not in relaunch.stdout
    log = (output_dir / "output.log").read_text()
    assert resumes in log
    assert "training done: 3 epochs, 36 optimizer steps" in log


def test_missing_arguments_and_paths_fail_clearly_and_the_shell_lives_on(assets, tmp_path):
    out = tmp_path / "out"
    script = f"""
snapshot {tmp_path}/before
. {REPO_ROOT}/exps/pretrain.sh; echo "no arguments: $?"
snapshot {tmp_path}/after_1
. {REPO_ROOT}/exps/pretrain.sh /nowhere pretrain.yaml {out}; echo "no llama folder: $?"
. {REPO_ROOT}/exps/pretrain.sh llama nothing.yaml {out}; echo "no data config: $?"
. {REPO_ROOT}/exps/finetune.sh llama nothing.pth finetune.yaml {out}; echo "no checkpoint: $?"
. {REPO_ROOT}/exps/finetune.sh llama; echo "finetune without its arguments: $?"
snapshot {tmp_path}/after_2
FOREGROUND=1
. {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {out} --imagebind_path /nowhere.pth --device cpu; echo "no encoder: $?"
unset FOREGROUND
snapshot {tmp_path}/after_3
echo "shell alive"
"""
    result = run_bash(script, assets.root, tmp_path)
    for what in ("no arguments", "no llama folder", "no data config", "no checkpoint",
                 "finetune without its arguments", "no encoder"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(what + ":"))
        assert line != f"{what}: 0", result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("shell alive")
    errors = result.stderr
    assert "launcher: missing LLAMA_DIR. Usage: . exps/pretrain.sh LLAMA_DIR DATA_YAML OUTPUT_DIR" in errors
    assert "launcher: LLAMA_DIR '/nowhere' is not a folder" in errors
    assert "launcher: DATA_YAML 'nothing.yaml' is not a file" in errors
    assert "launcher: PRETRAINED_PTH 'nothing.pth' is not a file" in errors
    assert "launcher: missing PRETRAINED_PTH" in errors
    assert "ImageBind weights not found at /nowhere.pth" in result.stdout  # the run's own message, echoed
    assert_unchanged(tmp_path, "before", "after_1", "after_2", "after_3")


def interpreter(path: Path, *python_flags: str) -> Path:
    """A `python` at `path` that runs this test's interpreter (with `python_flags`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {" ".join(python_flags)} "$@"\n')
    path.chmod(0o755)
    return path


def test_a_python_without_torch_fails_in_the_terminal_and_starts_nothing(assets, tmp_path):
    no_torch = interpreter(tmp_path / "bin" / "python", "-S")  # no site-packages: no torch
    out = tmp_path / "out"
    script = f". {REPO_ROOT}/exps/pretrain.sh llama pretrain.yaml {out} {tiny_flags(assets)}\necho \"status $?\"\n"
    result = run_bash(script, assets.root, tmp_path, env={**ENV, "PYTHON": str(no_torch)})
    assert "status 1" in result.stdout and "Started" not in result.stdout
    assert f"launcher: '{no_torch}' cannot import torch: run 'bash exps/setup_venv.sh'" in result.stderr
    assert not out.exists()  # nothing was started, not even the output folder


def test_without_python_set_the_projects_venv_is_used(assets, tmp_path):
    repo = tmp_path / "repo"  # this checkout, with a .venv of its own
    repo.mkdir()
    for entry in REPO_ROOT.iterdir():
        if entry.name not in (".venv", ".git"):
            (repo / entry.name).symlink_to(entry)
    venv_python = interpreter(repo / ".venv" / "bin" / "python")
    interpreter(tmp_path / "path" / "python3", "-S")  # the python3 first on the PATH has no torch
    env = {key: value for key, value in ENV.items() if key != "PYTHON"}
    env["PATH"] = f"{tmp_path / 'path'}:{env['PATH']}"
    out = tmp_path / "out"
    script = (f"FOREGROUND=1\n. {repo}/exps/pretrain.sh llama pretrain.yaml {out} {tiny_flags(assets)} "
              "--imagebind_config imagebind/tiny.yaml --split_epoch 1\necho \"status $?\"\n")
    result = run_bash(script, assets.root, tmp_path, env=env)
    assert f"Python: {venv_python}" in result.stdout and "status 0" in result.stdout, result.stdout + result.stderr


MISTAKES = {
    "an option's name mistyped in the data config":
        ("META:\n  - path: shapes/train.tsv\n    image_rot: shapes\n", None, "unknown option 'image_rot'"),
    "a missing image folder":
        ("META:\n  - path: shapes/train.tsv\n    image_root: /nowhere/images\n", None,
         "folder '/nowhere/images' not found"),
    "more sub-epochs (the recipe's --split_epoch 50) than the table has rows":
        ("META:\n  - path: shapes/train.tsv\n    image_root: shapes\n", None,
         "split_epoch=50 needs at least that many samples per pass, but the ratios give 24"),
    "ImageBind's weights given as the pre-training checkpoint":
        (None, "imagebind/tiny.pth", "is not an adapter checkpoint"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_line_in_the_terminal_and_nothing_starts(assets, tmp_path, mistake):
    config_text, pretrained, message = MISTAKES[mistake]
    config = "finetune.yaml"
    if config_text is not None:
        config = str(tmp_path / "data.yaml")
        (tmp_path / "data.yaml").write_text(config_text)
    out = tmp_path / "out"
    launcher = (f"pretrain.sh llama {config}" if pretrained is None else f"finetune.sh llama {pretrained} {config}")
    script = f". {REPO_ROOT}/exps/{launcher} {out} {tiny_flags(assets)} --imagebind_config imagebind/tiny.yaml\n" \
             'echo "status $?"\n'
    result = run_bash(script, assets.root, tmp_path)
    assert "status 1" in result.stdout and "Started" not in result.stdout, result.stdout + result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if message in line]
    assert len(said) == 1 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert not out.exists()  # no job, no log: nothing went to the background


def test_the_startup_benchmark_times_both_phases_to_their_first_step(assets, tmp_path, capsys):
    records = time_startup(assets, tmp_path, repeats=1)
    assert [record["phase"] for record in records] == ["pretrain", "finetune"]
    for record in records:
        assert 0 < record["seconds_to_first_step"] < record["seconds_total"]
    assert (tmp_path / "pretrain-1" / "checkpoint-1.pth").is_file()  # fine-tuning started from it
    assert (tmp_path / "finetune-1" / "checkpoint-1.pth").is_file()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("median") for line in lines[2:]] == [records[0]["seconds_to_first_step"],
                                                          records[1]["seconds_to_first_step"]]
