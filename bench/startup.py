"""Time to the first optimizer step through the launchers, as the demo starts each phase.

    python -m bench.startup [--repeats 3] [--assets DIR] [--work_dir DIR] [--repo CHECKOUT]

Each repetition runs `. exps/pretrain.sh`, then `. exps/finetune.sh` from its checkpoint, attached
(FOREGROUND=1), one process, one thread, on the CPU, with the demo's tiny files (written once under
--assets unless it already holds them) and the demo's flags for one epoch. The clock starts when
bash starts sourcing the launcher and stops when the run prints its first progress line (the first
step of epoch 1); everything before counts: the launcher's checks, the interpreter's imports, the
files read, the model built, the first batch made and trained on.

One JSON line per phase and repetition, then one per phase with the median, minimum and maximum.
--repo runs another checkout's launchers (an older commit, say) on the same files, for a before
and after on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file, bench/startup.py: import the project from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exps.tiny_assets import MANIFEST_NAME, TinyAssets, read_tiny_assets, write_tiny_assets  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_STEP = re.compile(r"epoch \[1/\d+\] step \[\s*1/")
# The demo's flags (exps/demo.sh), for one epoch.
RUN_FLAGS = "--device cpu --num_workers 0 --batch_size 4 --warmup_epochs 1 --blr 1.0 --seed 0 --epochs 1"
PHASES = ("pretrain", "finetune")


def launcher_script(repo: Path, phase: str, assets: TinyAssets, output_dir: Path, pretrained: Path) -> str:
    encoder = f"--imagebind_path {assets.imagebind_path} --imagebind_config {assets.imagebind_config}"
    if phase == "pretrain":
        return (f". {repo}/exps/pretrain.sh {assets.llama_dir} {assets.pretrain_config} {output_dir} "
                f"{encoder} {RUN_FLAGS} --split_epoch 1")
    return (f". {repo}/exps/finetune.sh {assets.llama_dir} {pretrained} {assets.finetune_config} {output_dir} "
            f"{encoder} {RUN_FLAGS}")


def time_phase(script: str, env: dict[str, str]) -> dict[str, float]:
    """Seconds from the launcher's start to the first step and to its end; raises if it failed."""
    started = time.perf_counter()
    shell = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    first_step, lines = None, []
    for line in shell.stdout:
        lines.append(line)
        if first_step is None and FIRST_STEP.search(line):
            first_step = time.perf_counter() - started
    status = shell.wait()
    total = time.perf_counter() - started
    if status != 0 or first_step is None:
        raise RuntimeError(f"the launch failed (status {status}); its output:\n{''.join(lines[-20:])}")
    return {"seconds_to_first_step": round(first_step, 2), "seconds_total": round(total, 2)}


def run(assets: TinyAssets, work_dir: Path, repeats: int, repo: Path = REPO_ROOT) -> list[dict]:
    env = {**os.environ, "PYTHON": sys.executable, "FOREGROUND": "1", "NPROC_PER_NODE": "1", "OMP_NUM_THREADS": "1"}
    facts = {"bench": "startup", "repo": str(repo), "cpus": os.cpu_count(), "threads": 1, "python": sys.executable,
             "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    records = []
    for repeat in range(1, repeats + 1):
        pretrain_dir = work_dir / f"pretrain-{repeat}"
        for phase in PHASES:
            output_dir = work_dir / f"{phase}-{repeat}"
            script = launcher_script(repo, phase, assets, output_dir, pretrain_dir / "checkpoint-last.pth")
            record = {**facts, "phase": phase, "repeat": repeat, **time_phase(script, env)}
            print(json.dumps(record), flush=True)
            records.append(record)
    for phase in PHASES:
        seconds = [record["seconds_to_first_step"] for record in records if record["phase"] == phase]
        print(json.dumps({**facts, "phase": phase, "repeats": len(seconds), "median": statistics.median(seconds),
                          "min": min(seconds), "max": max(seconds)}), flush=True)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="launches of each phase (default: 3)")
    parser.add_argument("--assets", type=Path, default=None,
                        help="the tiny files: read if written before, else written there (default: a temporary folder)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="where the runs write (default: a temporary folder, removed at the end)")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT,
                        help="the checkout whose launchers run (default: this one)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1")
    with tempfile.TemporaryDirectory(prefix="startup-") as scratch:
        root = args.assets or Path(scratch) / "assets"
        assets = read_tiny_assets(root) if (root / MANIFEST_NAME).is_file() else write_tiny_assets(root)
        run(assets, args.work_dir or Path(scratch) / "runs", args.repeats, args.repo.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
