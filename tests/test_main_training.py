"""main_pretrain.py and main_finetune.py end to end on the CPU, with exps/tiny_assets.py's files.

Each run is a real process (the entry point as users start it, or under torchrun), seconds long.
The facts: the loss falls in both phases; checkpoints hold the released layout and the trainable
tensors' optimizer state and nothing of the frozen base, and load as released files do; two
processes train the same model and log once; a run killed (SIGKILL) or stopped (SIGTERM) in the
middle of an epoch and resumed with --resume auto repeats the uninterrupted run's losses bit for
bit; a non-finite loss stops the run naming its step and leaves the last checkpoint alone; resuming
with a changed model or data config is refused with the differences listed; a bad sample under
--on_bad_sample error is reported in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from exps.tiny_assets import TinyAssets, write_tiny_assets
from support import REPO_ROOT

# One thread: the runs are tiny, the machine's cores are shared, and the bit-for-bit comparisons
# need the same arithmetic in every run.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEPS_PER_EPOCH = 12  # 24 training pictures, batch 2


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> TinyAssets:
    return write_tiny_assets(tmp_path_factory.mktemp("tiny_assets"))


def pretrain_flags(assets: TinyAssets, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--llama_path", str(assets.llama_dir), "--data_config", str(assets.pretrain_config),
        "--imagebind_path", str(assets.imagebind_path), "--imagebind_config", str(assets.imagebind_config),
        "--output_dir", str(output_dir), "--device", "cpu", "--num_workers", "0", "--batch_size", "2",
        "--epochs", "3", "--warmup_epochs", "1", "--blr", "1.0", "--print_freq", "4", "--log_step_losses", *extra,
    ]


def run(entry: str, flags: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, entry, *flags], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def start(entry: str, flags: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, entry, *flags], cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def epoch_records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "log.txt").read_text().splitlines()]


def step_losses(output_dir: Path) -> dict[int, float]:
    """global step -> loss; a step recorded twice (run again after a resume) keeps its last value."""
    lines = (output_dir / "step_losses.jsonl").read_text().splitlines()
    return {record["global_step"]: record["loss"] for record in map(json.loads, lines)}


def read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def without_timing(records: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "epoch_seconds"} for record in records]


@pytest.fixture(scope="module")
def pretrained(assets, tmp_path_factory) -> Path:
    """An uninterrupted pre-training run (3 epochs of 12 steps) with held-out data; its folder."""
    output_dir = tmp_path_factory.mktemp("pretrain")
    ok(run("main_pretrain.py", pretrain_flags(assets, output_dir, "--val_data_config", str(assets.held_out_config))))
    return output_dir


# -- both phases learn; what a checkpoint holds ---------------------------------------------------------

def test_one_epoch_number_in_the_progress_line_log_txt_the_checkpoint_name_and_inspect(pretrained):
    last_progress = [line for line in (pretrained / "train.log").read_text().splitlines() if "step [" in line][-1]
    assert "epoch [3/3] step [12/12]" in last_progress
    assert epoch_records(pretrained)[-1]["epoch"] == 3
    inspected = subprocess.run([sys.executable, "-m", "model.convert", "inspect", str(pretrained / "checkpoint-3.pth")],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "position:      after epoch 3 (global step 36)" in inspected


def test_pretraining_lowers_the_loss_on_training_and_held_out_pictures(pretrained):
    records = epoch_records(pretrained)
    assert [record["epoch"] for record in records] == [1, 2, 3]  # epochs count from 1
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 1.0
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.3
    assert all(record["train_samples"] == 24 and record["bad_samples"] == {} for record in records)
    assert len(step_losses(pretrained)) == 3 * STEPS_PER_EPOCH
    assert {path.name for path in pretrained.glob("checkpoint-*.pth")} == {
        "checkpoint-2.pth", "checkpoint-3.pth", "checkpoint-last.pth"}  # --save_freq 2: epoch 2, and 3 (the last)


def test_a_checkpoint_holds_the_released_layout_and_the_trainables_optimizer_state_only(pretrained, assets):
    import model

    path = pretrained / "checkpoint-last.pth"
    checkpoint = read(path)
    loaded = model.load(path, assets.llama_dir, assets.imagebind_path, device="cpu")
    released = loaded.state_dict_released()
    assert set(checkpoint["model"]) == set(released)
    for key, tensor in released.items():
        assert torch.equal(checkpoint["model"][key], tensor.cpu()), key
    trainable_shapes = sorted(tuple(p.shape) for p in loaded.trainable_parameters().values())
    optimizer_shapes = sorted(tuple(s["exp_avg"].shape) for s in checkpoint["optimizer"]["state"].values())
    assert optimizer_shapes == trainable_shapes
    assert not any(key.startswith("image_bind.") or key.endswith(("wq.weight", "tok_embeddings.weight"))
                   for key in checkpoint["model"])
    # Size: the released tensors plus Adam's two moments, a few kilobytes of records; not the frozen base.
    tensor_bytes = sum(t.numel() * t.element_size() for t in checkpoint["model"].values())
    tensor_bytes += sum(t.numel() * t.element_size() for s in checkpoint["optimizer"]["state"].values()
                        for t in s.values())
    frozen_bytes = sum(p.numel() * p.element_size() for p in loaded.parameters() if not p.requires_grad)
    assert tensor_bytes < path.stat().st_size < tensor_bytes + 256 * 1024
    assert path.stat().st_size < frozen_bytes
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]) == (3, 0, 36)
    assert checkpoint["phase"] == "pretrain" and checkpoint["base"]["llama_type"] == assets.llama_type


def test_finetuning_from_the_released_layout_of_a_pretraining_checkpoint_lowers_the_loss(pretrained, assets, tmp_path):
    import model

    # Only the released layout: what a user with 7B-pretrained.pth has.
    released_file = tmp_path / "pretrained.pth"
    torch.save({"model": read(pretrained / "checkpoint-last.pth")["model"]}, released_file)
    imagebind_args = json.loads(json.dumps(__import__("yaml").safe_load(assets.imagebind_config.read_text())))
    as_released = model.load(released_file, assets.llama_dir, assets.imagebind_path, imagebind_args=imagebind_args,
                             device="cpu")
    as_ours = model.load(pretrained / "checkpoint-last.pth", assets.llama_dir, assets.imagebind_path, device="cpu")
    for key, tensor in as_ours.state_dict().items():
        assert torch.equal(as_released.state_dict()[key], tensor), key

    output_dir = tmp_path / "finetune"
    ok(run("main_finetune.py", [
        "--llama_path", str(assets.llama_dir), "--pretrained_path", str(released_file),
        "--data_config", str(assets.finetune_config), "--imagebind_path", str(assets.imagebind_path),
        "--imagebind_config", str(assets.imagebind_config), "--output_dir", str(output_dir), "--device", "cpu",
        "--num_workers", "0", "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--blr", "0.5",
    ]))
    records = epoch_records(output_dir)
    assert len(records) == 2 and records[-1]["train_loss"] < records[0]["train_loss"] - 0.5
    finetuned = read(output_dir / "checkpoint-last.pth")
    assert finetuned["phase"] == "finetune"
    assert any(".lora_" in key for key in finetuned["model"]) and "image_bind_proj.weight" in finetuned["model"]


# -- two processes ------------------------------------------------------------------------------------

def test_two_processes_train_one_model_and_log_once(assets, tmp_path):
    output_dir = tmp_path / "ddp"
    flags = pretrain_flags(assets, output_dir, "--epochs", "2", "--num_workers", "1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "main_pretrain.py", *flags], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                            timeout=180)
    ok(result)
    output = result.stdout + result.stderr
    assert "[rank 1] INFO" not in output and "[rank 0] INFO" in output
    assert output.count("the trainable tensors agree on all 2 ranks") == 2  # after each epoch
    assert output.count("step [1/6]") == 2  # 24 pictures / (2 ranks x batch 2): one line per epoch
    records = epoch_records(output_dir)
    assert len(records) == 2 and all(record["train_samples"] == 24 for record in records)
    assert len(step_losses(output_dir)) == 12


# -- interrupted and resumed: the same losses, bit for bit --------------------------------------------

def wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before it could be interrupted:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.002)


def pause_when(ready, process: subprocess.Popen) -> None:
    """Freeze the run (SIGSTOP) at a moment when `ready()` holds; the caller then signals it.

    The run's files are read while it stands still, so a slow test process cannot be overtaken."""
    while True:
        wait_for(lambda: ready() is not None, process)
        process.send_signal(signal.SIGSTOP)
        if ready():
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.01)


def last_recorded_step(output_dir: Path) -> int | None:
    path = output_dir / "step_losses.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1])["global_step"] if lines else None


def assert_resume_repeats(pretrained: Path, interrupted: Path, assets: TinyAssets) -> None:
    stopped_at = read(interrupted / "checkpoint-last.pth")
    assert 0 < stopped_at["step_in_epoch"] < STEPS_PER_EPOCH, "not stopped in the middle of an epoch"
    lines_before = len((interrupted / "step_losses.jsonl").read_text().splitlines())
    ok(run("main_pretrain.py", pretrain_flags(assets, interrupted, "--resume", "auto",
                                              "--val_data_config", str(assets.held_out_config))))
    resumed_steps = [json.loads(line)["global_step"]
                     for line in (interrupted / "step_losses.jsonl").read_text().splitlines()[lines_before:]]
    assert resumed_steps[0] == stopped_at["global_step"] + 1  # it continued, it did not start over
    assert step_losses(interrupted) == step_losses(pretrained)  # every step's loss, exactly
    expected = without_timing(epoch_records(pretrained))
    assert without_timing(epoch_records(interrupted)) == expected[len(expected) - len(epoch_records(interrupted)):]


def test_killed_mid_epoch_and_resumed_repeats_the_losses_bit_for_bit(pretrained, assets, tmp_path):
    output_dir = tmp_path / "killed"
    flags = pretrain_flags(assets, output_dir, "--val_data_config", str(assets.held_out_config),
                           "--save_interval_steps", "2")
    process = start("main_pretrain.py", flags)
    last = output_dir / "checkpoint-last.pth"

    def saved_mid_epoch() -> bool | None:
        return read(last)["step_in_epoch"] > 0 if last.exists() else None

    pause_when(saved_mid_epoch, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert_resume_repeats(pretrained, output_dir, assets)


def test_sigterm_mid_epoch_saves_exits_cleanly_and_resuming_repeats_the_losses(pretrained, assets, tmp_path):
    output_dir = tmp_path / "terminated"
    flags = pretrain_flags(assets, output_dir, "--val_data_config", str(assets.held_out_config))
    process = start("main_pretrain.py", flags)

    def inside_an_epoch() -> bool | None:
        # The run stops after the step it is in, or right after the last one recorded: neither may end an epoch.
        step = last_recorded_step(output_dir)
        return None if step is None else step % STEPS_PER_EPOCH not in (0, STEPS_PER_EPOCH - 1)

    pause_when(inside_an_epoch, process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "stopped by SIGTERM at epoch 1 after step" in output and "--resume auto" in output
    assert not (output_dir / "log.txt").exists()  # no epoch was finished
    assert_resume_repeats(pretrained, output_dir, assets)


# -- stopping with a clear message --------------------------------------------------------------------

def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(assets, tmp_path):
    output_dir = tmp_path / "diverged"
    # A learning rate of 1e30: the first step moves only the gates (the bridge's gradient is zero while
    # they are); the second overflows the bridge (its loss was still finite), and nothing is saved after it.
    result = run("main_pretrain.py", pretrain_flags(assets, output_dir, "--lr", "1e30", "--warmup_epochs", "0",
                                                    "--save_interval_steps", "1"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert ("NonFiniteLossError: the trainable tensors hold non-finite values after optimizer step 2 of the run "
            "(epoch 1, step 2 of the epoch)") in output
    assert "Traceback" not in output
    last = read(output_dir / "checkpoint-last.pth")
    assert last["global_step"] == 1
    assert all(torch.isfinite(tensor).all() for tensor in last["model"].values())
    assert not (output_dir / "checkpoint-1.pth").exists()


def test_a_non_finite_loss_after_a_resume_stops_naming_its_step_and_leaves_the_checkpoint(pretrained, assets,
                                                                                            tmp_path):
    output_dir = tmp_path / "nan_loss"
    output_dir.mkdir()
    shutil.copy(pretrained / "checkpoint-last.pth", output_dir)
    before = (output_dir / "checkpoint-last.pth").read_bytes()
    flags = pretrain_flags(assets, output_dir, "--resume", "auto", "--resume_force", "--epochs", "4", "--lr", "1e30")
    result = run("main_pretrain.py", flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    first_nan = min(step for step, loss in step_losses(output_dir).items() if loss != loss)
    assert f"NonFiniteLossError: the loss is not finite at optimizer step {first_nan} of the run (epoch 4," in output
    assert first_nan > 36 and "Traceback" not in output
    assert (output_dir / "checkpoint-last.pth").read_bytes() == before
    assert not (output_dir / "checkpoint-4.pth").exists()


def test_resume_refuses_a_changed_model_or_data_config_listing_the_differences(pretrained, assets, tmp_path):
    output_dir = tmp_path / "changed"
    output_dir.mkdir()
    shutil.copy(pretrained / "checkpoint-last.pth", output_dir)
    before = (output_dir / "checkpoint-last.pth").read_bytes()
    flags = pretrain_flags(assets, output_dir, "--resume", "auto", "--max_words", "64", "--print_freq", "5",
                           "--data_config", str(assets.held_out_config))
    result = run("main_pretrain.py", flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ResumeMismatchError" in output and "Traceback" not in output
    assert "--max_words: 96 -> 64" in output
    assert f"--data_config: '{assets.pretrain_config}' -> '{assets.held_out_config}'" in output
    assert "data_config_sha256:" in output
    assert "--val_data_config:" in output.split("harmless changes:")[1]  # listed, but not a reason to refuse
    assert "--print_freq: 4 -> 5" in output.split("harmless changes:")[1]
    assert (output_dir / "checkpoint-last.pth").read_bytes() == before


def test_a_bad_sample_under_on_bad_sample_error_is_reported_in_one_line(assets, tmp_path):
    table = tmp_path / "broken.tsv"
    table.write_text(f"url\tcaption\n{assets.train_pictures[0].path}\ta red circle\n{tmp_path / 'gone.png'}\ta lost one\n")
    config = tmp_path / "broken.yaml"
    config.write_text(f"META:\n  - {table}\n")
    flags = pretrain_flags(assets, tmp_path / "out", "--data_config", str(config), "--on_bad_sample", "error",
                           "--num_workers", "1")
    result = run("main_pretrain.py", flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if "BadSampleError" in line]
    assert len(error_lines) == 1
    assert f"{table} row 1 (0-based, header not counted): missing_image" in error_lines[0]


# -- evaluation during training -----------------------------------------------------------------------

def test_benchmarks_are_evaluated_every_eval_freq_epochs_and_logged_beside_the_losses(assets, tmp_path):
    pictures = assets.held_out_pictures[:3]
    questions = [{"question_id": n, "image": picture.path.name, "text": f"Is the shape {colour}?",
                  "label": "yes" if picture.colour == colour else "no"}
                 for n, (picture, colour) in enumerate((p, c) for p in pictures for c in ("red", "blue"))]
    (tmp_path / "pope.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (tmp_path / "eval.yaml").write_text(
        f"BENCHMARKS:\n  - name: held_out\n    format: pope\n    question_file: {tmp_path / 'pope.jsonl'}\n"
        f"    image_dir: {pictures[0].path.parent}\n    max_gen_len: 3\n")
    output_dir = tmp_path / "run"
    ok(run("main_pretrain.py", pretrain_flags(assets, output_dir, "--epochs", "2", "--eval_config",
                                              str(tmp_path / "eval.yaml"), "--eval_freq", "2", "--eval_limit", "4")))
    first, second = epoch_records(output_dir)
    assert not any(key.startswith("eval_") for key in first)  # --eval_freq 2: only after epoch 2
    metrics = json.loads((output_dir / "eval" / "epoch-2" / "metrics.json").read_text())["held_out"]
    assert metrics["scored"] == 4 and second["eval_held_out_accuracy"] == metrics["metrics"]["accuracy"]
    assert {"eval_held_out_precision", "eval_held_out_f1"} <= second.keys()
