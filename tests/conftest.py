"""Fixtures shared by the whole suite: everything is made here, nothing is downloaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The project's packages import from the repository root; tests/support from tests/.
for folder in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from model.tokenizer import Tokenizer, format_prompt, train_tokenizer  # noqa: E402

# Text the tiny tokenizer is trained on: the prompt templates, captions and instructions of the
# tests, so that encodings stay short.
_TRAINING_TEXT = [
    format_prompt("Generate caption of this image"),
    format_prompt("Describe the picture.", "with an input"),
    "a red circle", "a green square", "a blue triangle", "a yellow star",
    "What is in the image? There is a cat on the mat.",
    "Name three colours. Red, green and blue.",
] * 20


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    train_tokenizer(_TRAINING_TEXT, path, vocab_size=320)
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path: Path) -> Tokenizer:
    return Tokenizer(tokenizer_path)
