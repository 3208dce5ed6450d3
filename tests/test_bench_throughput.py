"""bench/: the useful-FLOP figures at the real shape, the workload's batches, and the benchmark
run end to end in its tiny configuration on the CPU (a check of the path, not of speed)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from bench import throughput
from bench.flops import H100_BF16_FLOPS, llama_flops_per_token, vision_flops_per_image
from bench.random_model import build_random_model, model_shape
from bench.workload import WORKLOADS, warmup_batches
from model.imagebind import imagebind_huge

RESULT_FIELDS = {
    "phase", "batch_size", "samples_per_s", "tokens_per_s", "mfu", "peak_allocated_gib", "peak_reserved_gib",
    "data_wait_fraction", "step_seconds", "timed_loss", "samples", "non_pad_tokens", "images_encoded",
    "gflop_per_token", "tflop_per_image", "mfu_reference_tflops", "graphs_compiled_while_timing",
    "host_syncs_in_one_step", "loss_check", "device", "torch", "date", "settings",
}
SETTINGS_FIELDS = {"tiny", "precision", "steps", "warmup_steps", "compile", "compile_mode", "activation_checkpointing",
                   "pad_to_multiple", "group_by_length", "num_workers", "seed", "fused_adamw", "profiled"}


def test_useful_flops_at_the_7b_shape_are_the_issues_figures():
    llama_args, imagebind_args = model_shape(tiny=False)
    assert (llama_args.dim, llama_args.n_layers, llama_args.vocab_size, llama_args.ffn_hidden_dim) == (4096, 32, 32000, 11008)
    assert imagebind_args is None  # ImageBind-Huge
    assert llama_flops_per_token(llama_args) == pytest.approx(26.4e9, rel=0.005)
    with torch.device("meta"):
        huge = imagebind_huge()
    assert vision_flops_per_image(huge) == pytest.approx(0.336e12, rel=0.005)


def test_the_random_model_keeps_the_vision_branch_and_the_training_dtypes():
    model = build_random_model("finetune", tiny=True, device=torch.device("cpu"), frozen_dtype=torch.bfloat16, seed=0)
    assert model.image_bind.modalities == ["vision"]
    trainable, released = model.trainable_parameters(), model.state_dict_released()
    for name, param in model.named_parameters():
        assert param.dtype == (torch.float32 if name in trainable or name in released else torch.bfloat16), name
        assert torch.isfinite(param).all(), name
    assert all(layer.attention.gate.abs().sum() > 0 for layer in model.llama.layers)  # the image path counts
    assert model.llama.layers[0].attention.lora_wq_l2.weight.abs().sum() > 0


def test_warmup_batches_reach_every_padded_length_first_longest_first():
    workload = WORKLOADS["finetune"]
    batches = warmup_batches(workload, batch_size=4, steps=6, vocab_size=512, seed=0, pad_to_multiple=128)
    assert [batch["tokens"].shape[1] for batch in batches[:4]] == [512, 384, 256, 128]
    for batch in batches:
        lengths = (batch["tokens"] != 0).sum(dim=1)
        assert ((lengths >= workload.min_tokens) & (lengths <= workload.max_tokens)).all()
        answers = (batch["labels"] != 0).sum(dim=1)
        assert torch.equal(answers, lengths - lengths // 2)  # the second half of each sample is answer
        assert torch.equal(batch["images"].flatten(1).abs().sum(1) > 0, batch["has_image"])
    assert sum(int(batch["has_image"].sum()) for batch in batches) == 12  # every second sample


@pytest.mark.parametrize("phase, flags", [
    ("pretrain", ["--num_workers", "0"]),
    ("finetune", ["--num_workers", "1", "--activation_checkpointing", "--group_by_length"]),
])
def test_the_benchmark_runs_end_to_end_and_prints_one_json_line_with_every_field(phase, flags, capsys):
    batch_size, steps = 2, 3
    assert throughput.main(["--phase", phase, "--batch_size", str(batch_size), "--steps", str(steps),
                            "--warmup_steps", "3", "--device", "cpu", "--tiny", *flags]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert set(result) == RESULT_FIELDS and set(result["settings"]) == SETTINGS_FIELDS
    assert result["phase"] == phase and result["device"] == "cpu" and result["settings"]["tiny"]
    assert result["settings"]["activation_checkpointing"] == ("--activation_checkpointing" in flags)
    samples = batch_size * steps
    assert result["samples"] == samples
    assert result["images_encoded"] == (samples if phase == "pretrain" else samples // 2)
    workload = WORKLOADS[phase]
    assert workload.min_tokens * samples <= result["non_pad_tokens"] <= workload.max_tokens * samples
    seconds = result["step_seconds"] * steps
    assert result["samples_per_s"] == pytest.approx(samples / seconds)
    assert result["tokens_per_s"] == pytest.approx(result["non_pad_tokens"] / seconds)
    useful = result["non_pad_tokens"] * result["gflop_per_token"] * 1e9 + result["images_encoded"] * result["tflop_per_image"] * 1e12
    assert result["mfu"] == pytest.approx(useful / seconds / H100_BF16_FLOPS)
    assert 0 <= result["data_wait_fraction"] < 1 and result["graphs_compiled_while_timing"] == 0
    check = result["loss_check"]
    assert check["loss_rel_diff"] == 0 and check["grad_norm_rel_diff"] <= 1e-6  # float32, no compilation
    assert result["peak_allocated_gib"] is None and result["host_syncs_in_one_step"] is None  # CUDA only


def test_every_run_of_the_gpu_matrix_is_a_valid_benchmark_command_line():
    script = (Path(__file__).resolve().parents[1] / "bench" / "run_matrix.sh").read_text()
    block = script[script.index("runs=(") : script.index("\n)\n")]
    runs = re.findall(r'^\s+"([^"]+)"', block, flags=re.MULTILINE)
    assert len(runs) == 17
    for run in runs:
        args = throughput.build_parser().parse_args(shlex.split(run.replace("$out", "/tmp")))
        throughput.check_arguments(args)
