"""Files per second per CPU core of the readers of every other modality (data/audio.py, video.py,
text_tokens.py), on the inputs of the golden fixtures (tests/fixtures/modalities/).

    python -m bench.modality_readers [--repeats 7] [--warmup 3]

The process is pinned to one core with one torch thread, as the public preprocessing is timed
beside it (the README says how). One JSON line per case: files_per_second = 1 / median seconds per
call; "text" is one call over the whole list of texts (the tokenizer loaded once per process, as a
dataset or a notebook uses it; "text_first_call" times the first call, vocabulary loading included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):  # run as a file, bench/modality_readers.py: import the project from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.audio import load_audio  # noqa: E402
from data.text_tokens import ClipTokenizer  # noqa: E402
from data.video import load_video  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "modalities"


def median_seconds(call: Callable[[], object], warmup: int, repeats: int) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    texts = json.loads((FIXTURES / "text_cases.json").read_text(encoding="utf-8"))
    started = time.perf_counter()
    tokenizer = ClipTokenizer()
    tokenizer(texts)
    first_text_call = time.perf_counter() - started
    cases = [(name, lambda name=name: load_audio(FIXTURES / f"{name}.wav"))
             for name in ("audio_stereo_44k", "audio_mono_8k", "audio_short")]
    cases += [("video", lambda: load_video(FIXTURES / "video.mp4")), ("text", lambda: tokenizer(texts))]
    for name, call in cases:
        median, fastest = median_seconds(call, args.warmup, args.repeats)
        print(json.dumps({"case": name, "files_per_second": round(1.0 / median, 3), "median_s": round(median, 5),
                          "min_s": round(fastest, 5), "reps": args.repeats, "threads": torch.get_num_threads()}),
              flush=True)
    print(json.dumps({"case": "text_first_call", "seconds": round(first_text_call, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
