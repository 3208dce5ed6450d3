"""model.load + generate on a device, against the same on the CPU: the GPU smoke check's generation step.

    python -m bench.smoke_generate RUN_DIR [--device cuda] [--phase finetune]

RUN_DIR is what bench/gpu_smoke.sh (or exps/demo.sh) wrote: assets/ and <phase>/checkpoint-last.pth.
Loads the checkpoint twice, on the CPU in float32 and on `device` in its default precision (bf16 on
GPUs that have it), asks both the colour question about every held-out picture at temperature 0,
and prints one JSON line: how many answers are right on each, and how many the two share. The
exit status is 1 when the device's answers are right less often than the CPU's minus `--slack`
(low precision may flip a close call, not the model's skill).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import model
from engine.flags import read_imagebind_config
from exps.demo_report import load_pixels
from exps.tiny_assets import COLOUR_QUESTION, TinyAssets, read_tiny_assets
from model.tokenizer import format_prompt
from util.checkpoint import LAST_CHECKPOINT_NAME


def answers_on(device: str, assets: TinyAssets, checkpoint: Path,
               pixels: torch.Tensor) -> tuple[list[str], str, float]:
    """The colour answers of `checkpoint` loaded on `device`, its frozen dtype and the seconds it took."""
    started = time.perf_counter()
    llm = model.load(checkpoint, assets.llama_dir, assets.imagebind_path,
                     imagebind_args=read_imagebind_config(assets.imagebind_config), device=device)
    prompts = [format_prompt(COLOUR_QUESTION)] * len(pixels)
    answers = llm.generate({"Image": [pixels.to(device), 1]}, prompts, max_gen_len=12, temperature=0)
    dtype = str(llm.llama.tok_embeddings.weight.dtype).removeprefix("torch.")
    return answers, dtype, round(time.perf_counter() - started, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--phase", default="finetune", choices=("pretrain", "finetune"))
    parser.add_argument("--slack", type=int, default=2, help="answers the device may get wrong beyond the CPU's")
    args = parser.parse_args(argv)
    assets = read_tiny_assets(args.run_dir / "assets")
    pixels = load_pixels(assets.held_out_pictures)
    truth = [dict(picture.questions_and_answers)[COLOUR_QUESTION] for picture in assets.held_out_pictures]
    checkpoint = args.run_dir / args.phase / LAST_CHECKPOINT_NAME
    cpu, _, _ = answers_on("cpu", assets, checkpoint, pixels)
    device, dtype, seconds = answers_on(args.device, assets, checkpoint, pixels)

    def right(answers: list[str]) -> int:
        return sum(said.strip() == want for said, want in zip(answers, truth))

    result = {"check": "generate", "device": args.device, "dtype": dtype, "questions": len(truth),
              "right_cpu_fp32": right(cpu), "right_device": right(device),
              "same_as_cpu": sum(a == b for a, b in zip(cpu, device)), "load_and_generate_s": seconds,
              "torch": torch.__version__, "examples": device[:3]}
    print(json.dumps(result))
    return 0 if result["right_device"] >= result["right_cpu_fp32"] - args.slack else 1


if __name__ == "__main__":
    sys.exit(main())
