"""Builders shared by the data tests: images, meta files and configs made on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
import yaml
from PIL import Image

from model.tokenizer import Tokenizer


def make_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_table(path: Path, rows: list[dict], sep: str = "\t") -> Path:
    """A pre-training meta file as users make them: pandas, a header row, QUOTE_MINIMAL."""
    pd.DataFrame(rows).to_csv(path, sep=sep, index=False)
    return path


def write_json(path: Path, records: object) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_config(path: Path, meta: list) -> Path:
    path.write_text(yaml.safe_dump({"META": meta}, allow_unicode=True), encoding="utf-8")
    return path


def published_tokens_and_labels(
    tokenizer: Tokenizer, prompt: str, answer: str, max_words: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the published dataset computes for one prompt and answer, minus its padding to max_words."""
    prompt_ids = tokenizer.encode(prompt, bos=True, eos=False)
    ids = tokenizer.encode(prompt + answer, bos=True, eos=True)[:max_words]
    labels = [0] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids):]
    return torch.tensor(ids), torch.tensor(labels)
