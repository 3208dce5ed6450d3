"""A benchmark's metrics from its samples and the predictions made for them, by its task.

    caption   BLEU-1..4, METEOR, ROUGE-L, CIDEr (caption_metrics.py: pycocoevalcap)
    vqa       VQA accuracy, the 10-annotator rule (vqa_metrics.py)
    choice    accuracy of the option parsed from each answer (choice_metrics.py)
    yes_no    accuracy, precision, recall, F1, yes-ratio (POPE); MME's per-task scores and totals
              when the samples carry an MME task

Only samples with references and a prediction are scored: an unreadable input (prediction None)
and a split published without answers are counted beside the metrics, never silently dropped.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

from evaluation.benchmarks import Benchmark
from evaluation.caption_metrics import caption_scores
from evaluation.choice_metrics import choice_accuracy, mme_scores, mme_totals, parse_choice, parse_yes_no, yes_no_scores
from evaluation.vqa_metrics import mean_vqa_accuracy


def score_benchmark(benchmark: Benchmark, predictions: Mapping[str, str | None]) -> dict[str, Any]:
    """{"metrics": {...}, "scored", "unanswered", "unreadable", "unscorable"} for `benchmark`."""
    answered = {s.sample_id: s for s in benchmark.samples if predictions.get(s.sample_id) is not None}
    scored = {key: sample for key, sample in answered.items() if sample.references}
    counts = {"samples": len(benchmark.samples), "scored": len(scored),
              "unanswered": sum(s.sample_id not in predictions for s in benchmark.samples),
              "unreadable": sum(s.sample_id in predictions and predictions[s.sample_id] is None
                                for s in benchmark.samples),
              "unscorable": len(answered) - len(scored), "problems_in_files": len(benchmark.problems)}
    if not scored:
        return {"metrics": {}, **counts}
    said = {key: str(predictions[key]) for key in scored}
    task = benchmark.task
    if task == "caption":
        metrics = caption_scores({key: [said[key]] for key in scored}, {key: s.references for key, s in scored.items()})
    elif task == "vqa":
        metrics = {"accuracy": mean_vqa_accuracy(said, {key: s.references for key, s in scored.items()})}
    elif task == "choice":
        chosen = {key: parse_choice(said[key], s.choices or []) for key, s in scored.items()}
        metrics = asdict(choice_accuracy(chosen, {key: s.extra["answer_index"] for key, s in scored.items()}))
    else:
        parsed = {key: parse_yes_no(said[key]) for key in scored}
        labels = {key: s.references[0] for key, s in scored.items()}
        metrics = asdict(yes_no_scores(parsed, labels))
        if all("task" in s.extra for s in scored.values()):  # MME
            tasks = mme_scores(parsed, labels, {key: (s.extra["task"], s.extra.get("image", s.inputs.get("Image", key)))
                                                for key, s in scored.items()})
            metrics["mme"] = {name: asdict(score) for name, score in tasks.items()}
            metrics["mme_totals"] = mme_totals(tasks)
    return {"metrics": metrics, **counts}
