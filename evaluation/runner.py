"""Answering a benchmark's samples with the model: this process's share, batched, greedy, resumable.

Process r of R answers the samples whose position p in the benchmark has p % R == r. Samples
are batched in their order (a batch holds samples with the same modalities) and answered by the
model's batched `generate` with temperature 0: greedy decoding, each prompt stopped at its own
end of sequence. Batched prompts decode as they would alone (tests/test_adapter.py), so the
predictions, and the metrics, do not depend on the batch size or the number of processes
(tests/test_main_eval.py runs one and two processes). A sample whose file cannot be read is
answered None with the problem, counted and listed, never fatal.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from data.bad_samples import BadInput
from data.modality_inputs import read_inputs
from evaluation.benchmarks import Benchmark, EvalSample
from evaluation.eval_config import BenchmarkSpec
from evaluation.predictions import PredictionWriter, read_predictions
from model.tokenizer import format_prompt

logger = logging.getLogger(__name__)


def share_of(samples: Sequence[EvalSample], rank: int, world_size: int, done: set[str]) -> list[EvalSample]:
    """This process's samples not answered yet."""
    return [sample for position, sample in enumerate(samples)
            if position % world_size == rank and sample.sample_id not in done]


def batches(samples: Sequence[EvalSample], batch_size: int) -> list[list[EvalSample]]:
    """Consecutive samples in groups of at most `batch_size` with the same modalities."""
    grouped = []
    for _, run in itertools.groupby(samples, key=lambda sample: tuple(sorted(sample.inputs))):
        run = list(run)
        grouped += [run[start:start + batch_size] for start in range(0, len(run), batch_size)]
    return grouped


def _inputs(batch: Sequence[EvalSample], device: Any) -> dict[str, list] | None:
    modalities = sorted(batch[0].inputs)
    if not modalities:
        return None  # text only: the model's zero image, as text-only fine-tuning samples
    return read_inputs({name: [[sample.inputs[name] for sample in batch], 1] for name in modalities}, device=device)


def answer_benchmark(generate: Callable[[Any, list[str], int], list[str]], spec: BenchmarkSpec, benchmark: Benchmark,
                     writer: PredictionWriter, todo: Sequence[EvalSample], batch_size: int, max_gen_len: int,
                     device: Any) -> int:
    """Answer `todo` (written as they come); `generate(inputs, prompts, max_gen_len)`. Returns the count."""
    started, answered = time.perf_counter(), 0
    max_gen_len = spec.max_gen_len or max_gen_len
    for batch in batches(todo, batch_size):
        try:
            groups = [(batch, _inputs(batch, device))]
        except BadInput:  # find the unreadable file(s): one sample at a time
            groups = []
            for sample in batch:
                try:
                    groups.append(([sample], _inputs([sample], device)))
                except BadInput as bad:
                    writer.write(sample.sample_id, None, problem=str(bad))
                    answered += 1
        for group, inputs in groups:
            prompts = [format_prompt(spec.instruction(sample.question)) for sample in group]
            for sample, prediction in zip(group, generate(inputs, prompts, max_gen_len)):
                writer.write(sample.sample_id, prediction.strip())
            answered += len(group)
        rate = answered / (time.perf_counter() - started)
        logger.info("%s: %d/%d answered (%.2f/s), about %.0f s left", benchmark.name, answered, len(todo), rate,
                    (len(todo) - answered) / rate if rate else 0)
    return answered


def answer_benchmarks(generate: Callable[[Any, list[str], int], list[str]], specs: Sequence[BenchmarkSpec],
                      benchmarks: Sequence[Benchmark], folder: Path, context: Any, batch_size: int,
                      max_gen_len: int) -> None:
    """This process's share of every benchmark, into `folder`, skipping what it holds already
    (main_eval.py, and the evaluation during training). `context`: rank, world_size, device."""
    for spec, benchmark in zip(specs, benchmarks):
        done = set(read_predictions(folder, spec.name)) if folder.is_dir() else set()
        todo = share_of(benchmark.samples, context.rank, context.world_size, done)
        logger.info("%s: %d samples, %d answered before, %d for this process", spec.name,
                    len(benchmark.samples), len(done), len(todo))
        with PredictionWriter(folder, spec.name, context.rank) as writer:
            answer_benchmark(generate, spec, benchmark, writer, todo, batch_size, max_gen_len, context.device)
