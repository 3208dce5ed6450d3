"""`python -m model.convert inspect`: what a checkpoint holds, told without building the model."""

from __future__ import annotations

import pytest
import torch

from model.convert import main as convert_main
from model.files.summary import (
    HF_SHARD, IMAGEBIND, META_SHARD, RELEASED_FINETUNE, RELEASED_PRETRAIN, TRAINING_CHECKPOINT, summarize_file,
)
from model.files.build import meta_llama_keys
from support.tiny_models import tiny_model

BASE = {"llama_type": "7B_chinese", "params": {"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
        "fingerprint": "0123456789abcdef"}


@pytest.fixture(scope="module")
def models():
    return {phase: tiny_model(phase, vocab_size=64) for phase in ("pretrain", "finetune")}


def training_checkpoint(model, phase: str) -> dict:
    """What the engine writes (engine/checkpoint.py), with the base record."""
    released = model.state_dict_released()
    optimizer_state = {i: {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param),
                           "step": torch.tensor(17.0)} for i, param in enumerate(model.trainable_parameters().values())}
    return {"format_version": 1, "model": released, "optimizer": {"state": optimizer_state, "param_groups": []},
            "scaler": {}, "epoch": 3, "step_in_epoch": 5, "global_step": 17, "phase": phase,
            "base": BASE, "args": {"lr": 1e-3}}


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_a_training_checkpoint_is_described(tmp_path, models, phase, capsys):
    model = models[phase]
    path = tmp_path / "checkpoint-3.pth"
    torch.save(training_checkpoint(model, phase), path)
    summary = summarize_file(path)
    released = model.state_dict_released()
    assert (summary.layout, summary.phase) == (TRAINING_CHECKPOINT, phase)
    assert summary.weights.count == len(released)
    assert summary.weights.bytes == sum(t.numel() * t.element_size() for t in released.values())
    assert summary.other.count == 3 * len(model.trainable_parameters())
    assert summary.base == BASE
    assert summary.position == {"epoch": 3, "step_in_epoch": 5, "global_step": 17}
    assert summary.top_level_keys[:3] == ["format_version", "model", "optimizer"]

    assert convert_main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert f"layout:        {TRAINING_CHECKPOINT}\nphase:         {phase}\ntensors:       {len(released)} (" in printed
    assert "base:          7B_chinese, fingerprint 0123456789abcdef, params dim=32 n_layers=2" in printed
    assert "position:      epoch 4, after step 5 (global step 17)" in printed  # 3 epochs done, epochs from 1


@pytest.mark.parametrize("phase, layout, prefix", [
    ("pretrain", RELEASED_PRETRAIN, "llama."), ("finetune", RELEASED_FINETUNE, "llma."),
])
def test_a_released_file_is_described(tmp_path, models, phase, layout, prefix, capsys):
    released = {prefix + k.removeprefix("llama.") if k.startswith("llama.") else k: v.half()
                for k, v in models[phase].state_dict_released().items()}
    path = tmp_path / "7B.pth"
    torch.save({"model": released}, path)
    summary = summarize_file(path)
    assert (summary.layout, summary.phase, summary.base, summary.position) == (layout, phase, None, {})
    assert summary.weights.count == len(released) and dict(summary.weights.dtypes) == {"float16": len(released)}
    assert convert_main(["inspect", str(path)]) == 0
    assert "base:          none recorded (the released files were trained on 7B_chinese" in capsys.readouterr().out


def test_weight_files_are_told_apart(tmp_path, models):
    model = models["pretrain"]
    files = {
        META_SHARD: {k: v for k, v in model.llama.state_dict().items() if k in meta_llama_keys(model.llama.args)},
        IMAGEBIND: model.image_bind.state_dict(),
        HF_SHARD: {"model.embed_tokens.weight": torch.zeros(4, 2), "lm_head.weight": torch.zeros(4, 2)},
    }
    for layout, state in files.items():
        torch.save(state, tmp_path / "file.pth")
        summary = summarize_file(tmp_path / "file.pth")
        assert (summary.layout, summary.phase, summary.weights.count) == (layout, None, len(state))


def test_a_missing_or_foreign_file_is_one_error_line(tmp_path, caplog):
    assert convert_main(["inspect", str(tmp_path / "nowhere.pth")]) == 1
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert convert_main(["inspect", str(tmp_path / "notes.txt")]) == 1
    assert "notes.txt is not a file torch.load can read" in caplog.text
