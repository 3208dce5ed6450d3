"""Fixtures shared by the whole suite: everything is made here, nothing is downloaded."""

from __future__ import annotations

import shutil
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


@pytest.fixture(scope="session")
def app_files(tmp_path_factory: pytest.TempPathFactory):
    """The chat app's tiny model files (tests/support/app_files.py), made once for its test modules."""
    import torch

    from support.app_files import write_app_files

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and the answers match the app's (one thread too)
    try:
        return write_app_files(tmp_path_factory.mktemp("app_files"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def app_server(app_files):
    """(url, page): `python -m app`'s serve() on the tiny files, on a free local port, in this process.

    One torch thread while it runs (the tiny matrices gain nothing from more, and the tests' own
    reference answers are computed the same way); Gradio notices a closed session within 0.2 s.
    """
    import socket

    import torch

    from app.__main__ import build_parser, serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as env:
        for name in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR"):  # serve() sets them: put them back after
            env.delenv(name, raising=False)
        env.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")
        torch.set_num_threads(1)
        args = build_parser().parse_args([*app_files.model_flags, "--port", str(port), "--max_upload_mb", "1"])
        page, blocks = serve(args, block=False)
        try:
            yield f"http://127.0.0.1:{port}/", page
        finally:
            blocks.close()
            page.files.remove_all()
            torch.set_num_threads(threads)
            # Gradio fixes its scratch folder when first imported (the first app's upload folder) and makes
            # a subfolder there for each server: a second server in this process makes it again.
            from gradio import routes

            if Path(routes.DEFAULT_TEMP_DIR).name.startswith("imagebind-llm-app-"):
                shutil.rmtree(routes.DEFAULT_TEMP_DIR, ignore_errors=True)
