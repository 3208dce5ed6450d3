"""util.metric_writers: log.txt lines are strict JSON; TensorBoard scalars land on rank 0 only."""

from __future__ import annotations

import json

import pytest
import torch

from util.metric_writers import TensorBoardWriter, append_json_line


def _strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_appended_lines_are_strict_json(tmp_path):
    path = tmp_path / "log.txt"
    append_json_line(path, {"epoch": 0, "train_loss": 2.5, "skipped": {"bad_image": 2}, "lrs": [1e-4, 2e-4]})
    append_json_line(path, {"epoch": 1, "train_loss": float("nan"), "grad_norm": float("inf"), "note": None})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert _strict_json(lines[0]) == {"epoch": 0, "train_loss": 2.5, "skipped": {"bad_image": 2}, "lrs": [1e-4, 2e-4]}
    assert _strict_json(lines[1]) == {"epoch": 1, "train_loss": "nan", "grad_norm": "inf", "note": None}


def test_a_tensor_in_a_record_is_named():
    with pytest.raises(TypeError, match=r"'stats.loss' is a Tensor"):
        append_json_line("unused.txt", {"stats": {"loss": torch.tensor(1.0)}})


def test_tensorboard_scalars_are_written_when_enabled(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardWriter(tmp_path / "tb") as writer:
        assert writer.enabled
        writer.add_scalars({"loss": 2.0, "lr": 1e-4}, step=10, prefix="train/")
        writer.add_scalars({"loss": 1.5}, step=20, prefix="train/")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["train/loss", "train/lr"]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(10, 2.0), (20, 1.5)]


def test_tensorboard_disabled_writes_nothing(tmp_path):
    for writer in (TensorBoardWriter(tmp_path / "tb", enabled=False), TensorBoardWriter(None)):
        assert not writer.enabled
        writer.add_scalars({"loss": 1.0}, step=0)
        writer.flush()
        writer.close()
    assert list(tmp_path.iterdir()) == []
