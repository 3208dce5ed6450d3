"""The evaluation YAML: which benchmarks to run, read from which files, asked how.

    BENCHMARKS:
      - name: coco_karpathy_test       # the name results are filed under (default: the format)
        format: karpathy               # which reader (below); its arguments follow by name
        split_file: /data/coco/dataset_coco.json
        image_dir: /data/coco
        split: test
        prompt: "{question}"           # optional: the instruction put into the Alpaca template
        max_gen_len: 30                # optional (default: the --max_gen_len flag)
      - format: pope
        question_file: /data/pope/coco_pope_random.json
        image_dir: /data/coco/val2014
        prompt: "{question} Answer yes or no."

`prompt` may use {question}; the formatted instruction goes into the model's Alpaca template
(model.format_prompt) and is recorded with the results. Formats and their readers'
arguments: coco (annotation_file, image_dir), karpathy (split_file, image_dir, split), clotho
(caption_file, audio_dir), vqav2 (question_file, annotation_file, image_dir, ...), textvqa,
scienceqa, pope, mme: see evaluation/benchmarks.py. A mistake (an unknown format or argument, a
missing one) is an EvalConfigError naming the YAML file and line.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from evaluation import benchmarks

READERS: dict[str, Callable[..., benchmarks.Benchmark]] = {
    "coco": benchmarks.read_coco_captions, "karpathy": benchmarks.read_karpathy_split,
    "clotho": benchmarks.read_clotho_captions, "vqav2": benchmarks.read_vqav2,
    "textvqa": benchmarks.read_textvqa, "scienceqa": benchmarks.read_scienceqa,
    "pope": benchmarks.read_pope, "mme": benchmarks.read_mme,
}
logger = logging.getLogger(__name__)

OWN_KEYS = ("format", "name", "prompt", "max_gen_len")
DEFAULT_PROMPT = "{question}"


class EvalConfigError(ValueError):
    """A mistake in the evaluation YAML; the message names the file and the line."""


@dataclass
class BenchmarkSpec:
    """One entry of BENCHMARKS: its reader, the reader's arguments, and how to ask the model."""

    name: str
    format: str
    arguments: dict[str, Any]
    prompt: str = DEFAULT_PROMPT
    max_gen_len: int | None = None
    where: str = ""
    """"eval.yaml line 3": for messages."""
    problems: list[tuple[str, str]] = field(default_factory=list)

    def read(self) -> benchmarks.Benchmark:
        """The benchmark's samples (its files opened now; a wrong format raises BenchmarkFormatError)."""
        return READERS[self.format](**self.arguments, name=self.name)

    def instruction(self, question: str) -> str:
        return self.prompt.format(question=question)


def _entry(path: Path, node: yaml.MappingNode) -> BenchmarkSpec:
    where = f"{path} line {node.start_mark.line + 1}"
    values = {key.value: yaml.safe_load(yaml.serialize(value)) for key, value in node.value}
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    kind = values.get("format")
    if kind not in READERS:
        raise EvalConfigError(f"{where}: format {kind!r} is not one of {', '.join(READERS)}")
    reader = inspect.signature(READERS[kind])
    for key in values:
        if key not in OWN_KEYS and key not in reader.parameters:
            raise EvalConfigError(f"{path} line {lines[key]}: {kind} takes no {key!r}; its arguments are "
                                  f"{', '.join(p for p in reader.parameters if p != 'name')}")
    arguments = {key: value for key, value in values.items() if key not in OWN_KEYS}
    missing = [name for name, parameter in reader.parameters.items()
               if parameter.default is inspect.Parameter.empty and name not in arguments]
    if missing:
        raise EvalConfigError(f"{where}: {kind} needs {', '.join(missing)}")
    prompt = str(values.get("prompt", DEFAULT_PROMPT))
    try:
        prompt.format(question="")
    except (KeyError, IndexError, ValueError) as error:
        raise EvalConfigError(f"{path} line {lines.get('prompt')}: prompt may use only {{question}}: {error}") from None
    return BenchmarkSpec(name=str(values.get("name", kind)), format=kind, arguments=arguments, prompt=prompt,
                         max_gen_len=values.get("max_gen_len"), where=where)


def load_eval_config(path: str | Path) -> list[BenchmarkSpec]:
    """The benchmarks the YAML file at `path` lists (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation config {path} not found")
    root = yaml.compose(path.read_text(encoding="utf-8"))
    top = dict((key.value, value) for key, value in root.value) if isinstance(root, yaml.MappingNode) else {}
    entries = top.get("BENCHMARKS")
    if not isinstance(entries, yaml.SequenceNode) or not entries.value:
        raise EvalConfigError(f"{path}: expected a BENCHMARKS: list of benchmarks (see evaluation/eval_config.py)")
    specs = []
    for node in entries.value:
        if not isinstance(node, yaml.MappingNode):
            raise EvalConfigError(f"{path} line {node.start_mark.line + 1}: each benchmark is a mapping (format: ...)")
        specs.append(_entry(path, node))
    names = [spec.name for spec in specs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise EvalConfigError(f"{path}: benchmark names {duplicated} appear twice; give each a distinct name")
    return specs


def read_benchmarks(specs: Sequence[BenchmarkSpec], limit: int | None = None) -> list[benchmarks.Benchmark]:
    """Each spec's benchmark (the first `limit` samples when given); records left out are logged."""
    read = []
    for spec in specs:
        benchmark = spec.read()
        if limit is not None:
            benchmark.samples = benchmark.samples[:limit]
        for where, reason in benchmark.problems[:5]:
            logger.warning("%s: left out %s: %s", spec.name, where, reason)
        if len(benchmark.problems) > 5:
            logger.warning("%s: %d records left out in all (metrics.json lists them)", spec.name, len(benchmark.problems))
        read.append(benchmark)
    return read
