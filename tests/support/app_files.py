"""The files the chat app serves in the tests: the demo's kind of model, made in seconds.

The demo's tiny assets (exps/tiny_assets.py) with a LLaMA that has learned the demo's texts for a
few steps (so that greedy answers are words, which a page shows as they are, not random byte
pieces), and a fine-tuning checkpoint in the released layout whose adapter is random (gates
open, so that the picture changes the answer). Also a file no reader can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from exps.tiny_assets import write_tiny_assets
from model.files.build import build_from_files
from support.tiny_models import randomise_

from model.layout import BRIDGE_MODULES, PREFIX_MODULE


@dataclass(frozen=True)
class AppFiles:
    checkpoint: Path
    llama_dir: Path
    imagebind_path: Path
    imagebind_config: Path
    pictures: tuple[Path, ...]  # held-out demo pictures
    broken: Path  # a ".png" that is not a picture

    @property
    def model_flags(self) -> list[str]:
        return ["--checkpoint", str(self.checkpoint), "--llama_dir", str(self.llama_dir),
                "--imagebind_path", str(self.imagebind_path), "--imagebind_config", str(self.imagebind_config)]

    def load(self):
        import model

        return model.load(self.checkpoint, self.llama_dir, self.imagebind_path, device="cpu",
                          imagebind_args=yaml.safe_load(self.imagebind_config.read_text()))


def write_app_files(root: Path, language_model_steps: int = 40, seed: int = 0) -> AppFiles:
    assets = write_tiny_assets(root / "assets", train_pictures=1, held_out_pictures=2,
                               language_model_steps=language_model_steps)
    imagebind_args = yaml.safe_load(assets.imagebind_config.read_text())
    llm = build_from_files(assets.llama_dir, None, assets.imagebind_path, "finetune", imagebind_args=imagebind_args)
    torch.manual_seed(seed)
    with torch.no_grad():
        for offset, name in enumerate(BRIDGE_MODULES + (PREFIX_MODULE,)):
            randomise_(getattr(llm, name), seed + offset)
        for layer in llm.llama.layers:
            layer.attention.gate.fill_(0.5)
    checkpoint = root / "checkpoint.pth"
    torch.save({"model": llm.state_dict_released()}, checkpoint)
    broken = root / "broken.png"
    broken.write_bytes(b"these bytes are no picture")
    return AppFiles(checkpoint, assets.llama_dir, assets.imagebind_path, assets.imagebind_config,
                    tuple(p.path for p in assets.held_out_pictures), broken)
