"""Predictions written as they are made, one JSON line each, so that a killed evaluation resumes.

Each process appends to its own file, `predictions/<benchmark>.rank<R>.jsonl` (no two writers
share a file), flushing every line; a relaunch, with any number of processes, reads every rank's
file of the benchmark and skips the samples already answered. A line cut short by the kill is
ignored (its sample is answered again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO


def prediction_files(folder: Path, benchmark: str) -> list[Path]:
    return sorted(folder.glob(f"{benchmark}.rank*.jsonl"))


def read_predictions(folder: Path, benchmark: str) -> dict[str, str]:
    """{sample id: prediction} from every rank's file of `benchmark` (whole lines only)."""
    predictions: dict[str, str] = {}
    for path in prediction_files(folder, benchmark):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed writer
            predictions[str(record["sample_id"])] = record["prediction"]
    return predictions


class PredictionWriter:
    """Appends {"sample_id", "prediction"} lines to this rank's file, each flushed to disk."""

    def __init__(self, folder: Path, benchmark: str, rank: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{benchmark}.rank{rank}.jsonl"
        cut_short = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        self._stream: IO[str] = open(self.path, "a", encoding="utf-8")
        if cut_short:  # a killed writer's last line: end it, or the next record would join it
            self._stream.write("\n")

    def write(self, sample_id: str, prediction: str | None, problem: str | None = None) -> None:
        """One answer; a sample whose input could not be read gets prediction None and the problem."""
        record = {"sample_id": sample_id, "prediction": prediction}
        if problem is not None:
            record["problem"] = problem
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
