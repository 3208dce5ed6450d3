"""Where the numbers of a run are kept: `log.txt` (one JSON object a line) and TensorBoard events.

Both are written by rank 0 only; the caller passes `enabled=context.is_main` or checks it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping


def _json_safe(value: Any, key: str) -> Any:
    """`value` with non-finite floats spelled as strings: NaN and Infinity are not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, Mapping):
        return {k: _json_safe(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(
        f"log record field {key!r} is a {type(value).__name__}; pass numbers, strings, lists or dicts "
        "(call .item() on tensors)"
    )


def append_json_line(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append `record` to `path` as one line of strict JSON (the MAE-style `log.txt`)."""
    line = json.dumps({key: _json_safe(value, key) for key, value in record.items()}, allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


class TensorBoardWriter:
    """Scalars to TensorBoard event files in `log_dir`; does nothing when disabled or without a folder.

    TensorBoard is imported only when enabled, so ranks other than 0 never load it.
    """

    def __init__(self, log_dir: str | Path | None, enabled: bool = True):
        self._writer = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def add_scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """One scalar per entry, named `prefix + key`, at x-axis position `step`."""
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(prefix + name, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
