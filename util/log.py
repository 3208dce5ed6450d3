"""One logging setup for the whole run: informative on rank 0, quiet elsewhere.

Modules log through `logging.getLogger(__name__)`; this file decides where those records go. Other
ranks keep warnings and errors, so a problem on rank 3 is still seen, but not the same progress line
eight times. Nothing here touches `print` or `sys.stdout`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Marks the handlers this module installed, so that a second call replaces them instead of
# doubling every line, and leaves handlers that others (pytest, a notebook) installed alone.
_OWNED = "_imagebind_llm_handler"


def _owned(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _OWNED, True)
    return handler


def init_logger(
    rank: int,
    output_dir: str | Path | None = None,
    *,
    distributed: bool = False,
    level: int = logging.INFO,
    file_name: str = "train.log",
) -> None:
    """Configure the root logger for this process.

    Rank 0 logs `level` and above to stdout and, when `output_dir` is given, to
    `output_dir/file_name` too; other ranks log WARNING and above to stdout. Every line carries the
    time, and the rank when `distributed`.
    """
    rank_part = f"[rank {rank}] " if distributed else ""
    formatter = logging.Formatter(
        f"%(asctime)s {rank_part}%(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if rank == 0 and output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / file_name, encoding="utf-8"))

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(_owned(handler))
    root.setLevel(level if rank == 0 else max(level, logging.WARNING))
