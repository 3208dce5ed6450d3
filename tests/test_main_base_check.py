"""Through the real entry points: a checkpoint records the LLaMA it was trained on, and fine-tuning
from it on another base warns naming both, while the same base says nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exps.tiny_assets import TinyAssets, write_tiny_assets
from model.files.llama_folder import open_llama_folder
from support import REPO_ROOT

OTHER_BASE = "other_base"
WARNING = "was trained on another LLaMA base than the one loaded"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> TinyAssets:
    assets = write_tiny_assets(tmp_path_factory.mktemp("base_check_assets"), train_pictures=8, held_out_pictures=2)
    # A second base beside the first: same shape, other weights (as Meta's 7B beside 7B_chinese).
    other = assets.llama_dir / OTHER_BASE
    shutil.copytree(assets.llama_dir / assets.llama_type, other)
    weights = torch.load(other / "consolidated.00.pth", weights_only=True)
    weights["tok_embeddings.weight"] += 0.01
    torch.save(weights, other / "consolidated.00.pth")
    return assets


def common_flags(assets: TinyAssets, output_dir: Path) -> list[str]:
    return ["--llama_path", str(assets.llama_dir), "--imagebind_path", str(assets.imagebind_path),
            "--imagebind_config", str(assets.imagebind_config), "--output_dir", str(output_dir), "--device", "cpu",
            "--num_workers", "0", "--batch_size", "4", "--epochs", "1", "--warmup_epochs", "0"]


def run(entry: str, flags: list[str]) -> str:
    result = subprocess.run([sys.executable, entry, *flags], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def pretrained(assets, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("base_check_pretrain")
    run("main_pretrain.py", [*common_flags(assets, output_dir), "--llama_type", assets.llama_type,
                             "--data_config", str(assets.pretrain_config)])
    return output_dir / "checkpoint-last.pth"


def finetune(assets: TinyAssets, pretrained: Path, output_dir: Path, *extra: str) -> str:
    return run("main_finetune.py", [*common_flags(assets, output_dir), "--pretrained_path", str(pretrained),
                                    "--data_config", str(assets.finetune_config), *extra])


def test_a_checkpoint_records_the_base_it_was_trained_on(assets, pretrained):
    recorded = torch.load(pretrained, weights_only=True)["base"]
    assert recorded == open_llama_folder(assets.llama_dir, assets.llama_type).base_record
    assert recorded != open_llama_folder(assets.llama_dir, OTHER_BASE).base_record


def test_finetuning_on_another_base_warns_naming_both(assets, pretrained, tmp_path):
    output = finetune(assets, pretrained, tmp_path / "other", "--llama_type", OTHER_BASE)
    assert output.count(WARNING) == 1
    warning = output[output.index(WARNING):]
    assert f"checkpoint's base: {assets.llama_type}" in warning
    assert f"loaded base:       {OTHER_BASE}" in warning
    # Its own checkpoint records the base it was fine-tuned on.
    finetuned = torch.load(tmp_path / "other" / "checkpoint-last.pth", weights_only=True)
    assert finetuned["base"]["llama_type"] == OTHER_BASE


def test_finetuning_on_the_recorded_base_says_nothing(assets, pretrained, tmp_path):
    # No --llama_type: two bases lie in LLAMA_DIR, and the checkpoint's record picks its own.
    output = finetune(assets, pretrained, tmp_path / "same")
    assert WARNING not in output and "carries no base record" not in output
