"""Evaluating the model being trained, every few epochs (--eval_config, --eval_freq).

The entry points build a `TrainingEvaluator` from what the run says it needs
(`run.evaluation_settings()`, beside `run.data_settings()`) and hand it to `run.train`; the engine
calls it at the end of every --eval_freq-th epoch with the model and the process's place in the
run, and logs what rank 0 gets back to log.txt and TensorBoard beside the losses. The engine
imports nothing of evaluation/: the evaluator is only a callable to it.

Each call answers the benchmarks as main_eval.py does (every process its share, greedy, batched),
into OUTPUT_DIR/eval/epoch-<N>/predictions, so an evaluation cut short by a stop resumes with the
run; rank 0 scores and writes metrics.json there. The training model keeps only ImageBind's
vision branch, so benchmarks of other modalities belong to main_eval.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.benchmarks import BenchmarkFormatError
from evaluation.caption_metrics import JavaNotFoundError
from evaluation.eval_config import EvalConfigError, load_eval_config, read_benchmarks
from evaluation.predictions import read_predictions
from evaluation.runner import answer_benchmarks
from evaluation.scoring import score_benchmark
from util.distributed import DistributedContext, barrier


# The mistakes in an evaluation YAML or its files that the entry points report as one line.
EVALUATION_ERRORS = (EvalConfigError, BenchmarkFormatError, JavaNotFoundError)


@dataclass(frozen=True)
class EvaluationSettings:
    """What a run asks of its evaluation (engine.run.TrainingRun.evaluation_settings)."""

    config_path: Path
    output_dir: Path
    batch_size: int
    limit: int | None = None
    max_gen_len: int = 64


class TrainingEvaluator:
    """`evaluator(model, context, epoch)` -> {"eval_<benchmark>_<metric>": value} on rank 0, {} elsewhere."""

    def __init__(self, settings: EvaluationSettings):
        self.settings = settings
        self.specs = load_eval_config(settings.config_path)
        self.benchmarks = read_benchmarks(self.specs, settings.limit)  # the files checked before training

    def __call__(self, model: Any, context: DistributedContext, epoch: int) -> dict[str, float]:
        folder = self.settings.output_dir / "eval" / f"epoch-{epoch}"
        was_training = model.training
        model.eval()
        try:
            answer_benchmarks(
                lambda inputs, prompts, length: model.generate(inputs, prompts, max_gen_len=length, temperature=0.0),
                self.specs, self.benchmarks, folder / "predictions", context, self.settings.batch_size,
                self.settings.max_gen_len)
        finally:
            model.train(was_training)
        barrier(context)
        if not context.is_main:
            return {}
        logged, results = {}, {}
        for spec, benchmark in zip(self.specs, self.benchmarks):
            results[spec.name] = score_benchmark(benchmark, read_predictions(folder / "predictions", spec.name))
            logged.update({f"eval_{spec.name}_{metric}": float(value)
                           for metric, value in results[spec.name]["metrics"].items() if isinstance(value, (int, float))})
        (folder / "metrics.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        return logged


def training_evaluator(settings: dict[str, Any] | None) -> TrainingEvaluator | None:
    """The evaluator a run asks for (`run.evaluation_settings()`), or None when it asks for none."""
    return None if settings is None else TrainingEvaluator(EvaluationSettings(**settings))
