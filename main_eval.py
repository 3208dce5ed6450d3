"""Evaluate a checkpoint on benchmarks: predictions, then metrics (evaluation/).

    python main_eval.py --checkpoint ckpts/7B.pth --llama_dir /data/llama --imagebind_path ckpts/imagebind_huge.pth \
        --eval_config eval.yaml --output_dir out/eval
    torchrun --nproc_per_node 8 main_eval.py ...      (or . exps/eval.sh CHECKPOINT LLAMA_DIR EVAL_YAML OUTPUT_DIR)

Each benchmark of the YAML (evaluation/eval_config.py) is read, this process's share of its samples
answered greedily in batches (evaluation/runner.py), every prediction appended to
OUTPUT_DIR/predictions/<benchmark>.rank<R>.jsonl as it is made; a relaunch skips what is answered.
When every process is done, rank 0 scores each benchmark (evaluation/scoring.py) and writes
OUTPUT_DIR/metrics.json (metrics, counts, the prompt used, the files' problems) and metrics.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from engine.run import exit_on_user_error
from evaluation.benchmarks import Benchmark
from evaluation.during_training import EVALUATION_ERRORS
from evaluation.eval_config import BenchmarkSpec, load_eval_config, read_benchmarks
from evaluation.predictions import read_predictions
from evaluation.runner import answer_benchmarks
from evaluation.scoring import score_benchmark
from model.files.adapter_checkpoint import CheckpointFileError
from util.distributed import barrier, init_distributed, shutdown_distributed
from util.log import init_logger

logger = logging.getLogger("main_eval")

USER_ERRORS = (*EVALUATION_ERRORS, CheckpointFileError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of ours, or the released 7B.pth / 7B-pretrained.pth")
    parser.add_argument("--llama_dir", required=True, help="the folder with tokenizer.model and the LLaMA model folder")
    parser.add_argument("--llama_type", default=None, help="the model folder in --llama_dir (default: the checkpoint's base)")
    parser.add_argument("--imagebind_path", required=True, help="ImageBind's weights (imagebind_huge.pth)")
    parser.add_argument("--imagebind_config", default=None, help="YAML of ImageBindModel arguments (another size)")
    parser.add_argument("--eval_config", required=True, help="the benchmarks (evaluation/eval_config.py)")
    parser.add_argument("--output_dir", required=True, help="predictions, metrics.json and metrics.md go here")
    parser.add_argument("--batch_size", type=int, default=8, help="prompts answered together per process")
    parser.add_argument("--max_gen_len", type=int, default=64, help="the longest answer, unless the YAML says otherwise")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of each benchmark (a quick look)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--visual_cache", default=None, help="a visual cache to mix embeddings with (model/visual_cache.py)")
    parser.add_argument("--dry_run", action="store_true", help="read the config, the benchmarks and the files' headers; "
                                                               "print the plan; load no weight, write nothing")
    parser.add_argument("--resume", default="auto", choices=["auto"],
                        help="predictions already made are kept and skipped (the launchers pass it)")
    return parser


def describe(specs: Sequence[BenchmarkSpec], benchmarks: Sequence[Benchmark], args: argparse.Namespace) -> list[str]:
    lines = [f"evaluation of {args.checkpoint} on {len(benchmarks)} benchmark(s), output {args.output_dir}"]
    done = Path(args.output_dir) / "predictions"
    for spec, benchmark in zip(specs, benchmarks):
        answered = len(read_predictions(done, spec.name)) if done.is_dir() else 0
        lines.append(f"{spec.name}: {benchmark.task}, {len(benchmark.samples)} samples ({answered} answered before), "
                     f"{len(benchmark.problems)} records left out; prompt {spec.prompt!r}")
    return lines


def check_model_files(args: argparse.Namespace) -> None:
    from model.files.adapter_checkpoint import read_adapter_checkpoint
    from model.files.llama_folder import open_llama_folder

    checkpoint = read_adapter_checkpoint(args.checkpoint)
    open_llama_folder(args.llama_dir, args.llama_type, checkpoint.llama_type)
    if not Path(args.imagebind_path).is_file():
        raise FileNotFoundError(f"ImageBind weights not found at {args.imagebind_path}")


def write_results(output_dir: Path, specs: Sequence[BenchmarkSpec], benchmarks: Sequence[Benchmark],
                  args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"checkpoint": str(args.checkpoint), "benchmarks": {}}
    rows = ["| benchmark | task | scored | metric | value |", "| --- | --- | --- | --- | --- |"]
    for spec, benchmark in zip(specs, benchmarks):
        scored = score_benchmark(benchmark, read_predictions(output_dir / "predictions", spec.name))
        results["benchmarks"][spec.name] = {"task": benchmark.task, "format": spec.format, "prompt": spec.prompt,
                                            **scored, "problems": benchmark.problems}
        for metric, value in scored["metrics"].items():
            if isinstance(value, (int, float)):
                rows.append(f"| {spec.name} | {benchmark.task} | {scored['scored']} | {metric} | {value:.4f} |")
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (output_dir / "metrics.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for row in rows[2:]:
        logger.info("%s", row)
    return results


def evaluate(args: argparse.Namespace) -> None:
    import model
    from engine.flags import read_imagebind_config

    output_dir = Path(args.output_dir)
    context = init_distributed(args.device)
    try:
        init_logger(context.rank, output_dir, distributed=context.distributed, file_name="eval.log")
        specs = load_eval_config(args.eval_config)
        benchmarks = read_benchmarks(specs, args.limit)
        llm = model.load(args.checkpoint, args.llama_dir, args.imagebind_path, llama_type=args.llama_type,
                         imagebind_args=read_imagebind_config(args.imagebind_config), device=context.device,
                         visual_cache=args.visual_cache)
        predictions = output_dir / "predictions"

        def generate(inputs, prompts, max_gen_len):
            return llm.generate(inputs, prompts, max_gen_len=max_gen_len, temperature=0.0)

        answer_benchmarks(generate, specs, benchmarks, predictions, context, args.batch_size, args.max_gen_len)
        barrier(context)
        if context.is_main:
            write_results(output_dir, specs, benchmarks, args)
    finally:
        shutdown_distributed(context)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with exit_on_user_error(USER_ERRORS):
        if args.dry_run:
            init_logger(0, level=logging.WARNING)
            specs = load_eval_config(args.eval_config)
            benchmarks = read_benchmarks(specs, args.limit)
            check_model_files(args)
            print("\n".join(describe(specs, benchmarks, args)))
            return
        evaluate(args)


if __name__ == "__main__":
    main(sys.argv[1:])
