"""What the demo learned: its losses, and answers generated for pictures it never trained on.

    python -m exps.demo_report OUTPUT_DIR

Reads what exps/demo.sh left in OUTPUT_DIR (assets/, pretrain/, finetune/), logs the evidence and
writes it to OUTPUT_DIR/summary.txt and, as numbers, OUTPUT_DIR/summary.json:

- the loss of the first and the last epoch of each phase (pre-training's also on held-out pictures);
- captions generated for the held-out pictures next to their truth, and the fraction exactly right,
  before pre-training (the frozen base alone: gates at zero, so every picture gets the same
  caption), after it, and by pure chance (one caption of colours x shapes); and their CIDEr, as
  evaluation/ scores captions (pycocoevalcap; needs Java, left out without it);
- the questions the instruction data asks about a picture, asked about the held-out pictures before
  fine-tuning (the pre-trained model) and after it, and the text-only instructions;
- yes/no questions about the held-out pictures' colours, two a picture (its own colour, yes, and
  another, no: chance is one half), scored as evaluation/ scores POPE: accuracy, precision, recall.

Generation is greedy (temperature 0), on the CPU: the same answers on every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

import model
from data.images import load_image
from data.transforms import eval_transform
from engine.flags import read_imagebind_config
from engine.run import LOG_NAME
from exps.tiny_assets import (COLOUR_QUESTION, COLOURS, SHAPE_QUESTION, SHAPES, Picture, TinyAssets, alpaca_records,
                               other_colour, read_tiny_assets)
from evaluation.caption_metrics import JavaNotFoundError, caption_scores, require_java
from evaluation.choice_metrics import parse_yes_no, yes_no_scores
from model.tokenizer import CAPTION_INSTRUCTION, format_prompt
from model.files.build import build_from_files
from util.checkpoint import LAST_CHECKPOINT_NAME
from util.log import init_logger

logger = logging.getLogger(__name__)

# The folders exps/demo.sh writes under its output folder.
ASSETS, PRETRAIN, FINETUNE = "assets", "pretrain", "finetune"
MAX_GEN_LEN = 12  # tokens: every right answer is shorter, a wrong one is cut here
DEVICE = "cpu"
# A guess's chance of being right: one of the colours, one of the shapes.
QUESTION_CHANCE = {COLOUR_QUESTION: 1 / len(COLOURS), SHAPE_QUESTION: 1 / len(SHAPES)}
TEXT_ONLY = "text-only instructions"
YES_NO = "yes/no questions"
EXAMPLES = 3  # answers shown per question


@dataclass(frozen=True)
class Answers:
    """What a model said about each of several inputs (pictures or instructions), and how much was right."""

    inputs: list[str]
    generated: list[str]
    truth: list[str]

    @property
    def right(self) -> int:
        return sum(said.strip() == truth for said, truth in zip(self.generated, self.truth))

    @property
    def fraction(self) -> float:
        return self.right / len(self.truth)


# -- losses ----------------------------------------------------------------------------------------

def epoch_records(run_dir: Path) -> list[dict]:
    """The per-epoch records the engine appended to run_dir/log.txt (one JSON object a line)."""
    log = run_dir / LOG_NAME
    if not log.is_file():
        raise FileNotFoundError(f"{log} not found: did the {run_dir.name} run finish? (see {run_dir / 'output.log'})")
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_and_last(records: list[dict], keys: Sequence[str]) -> dict:
    return {which: {key: record[key] for key in ("epoch", *keys) if key in record}
            for which, record in (("first_epoch", records[0]), ("last_epoch", records[-1]))}


# -- generation ------------------------------------------------------------------------------------

def load_pixels(pictures: Sequence[Picture]) -> torch.Tensor:
    """[N, 3, 224, 224]: the pictures as inference sees them (data.transforms.eval_transform)."""
    transform = eval_transform()
    return torch.stack([load_image(picture.path, transform) for picture in pictures])


def ask_about_pictures(llm: model.ImageBindLLM, pictures: Sequence[Picture], pixels: torch.Tensor,
                       instructions: str | Sequence[str], truth: list[str]) -> Answers:
    """One instruction (or one for each) asked about each picture (one prompt per picture, in one batch)."""
    if isinstance(instructions, str):
        instructions = [instructions] * len(truth)
    prompts = [format_prompt(instruction) for instruction in instructions]
    generated = llm.generate({"Image": [pixels, 1]}, prompts, max_gen_len=MAX_GEN_LEN, temperature=0)
    return Answers([f"{picture.path.name}: {instruction}" if len(set(instructions)) > 1 else picture.path.name
                    for picture, instruction in zip(pictures, instructions)], generated, truth)


def ask_without_picture(llm: model.ImageBindLLM, records: list[dict]) -> Answers:
    """Text-only Alpaca records, no image (as text-only fine-tuning samples are trained)."""
    prompts = [format_prompt(record["instruction"], record["input"]) for record in records]
    generated = llm.generate(None, prompts, max_gen_len=MAX_GEN_LEN, temperature=0)
    instructions = [" ".join(filter(None, (record["instruction"], record["input"]))) for record in records]
    return Answers(instructions, generated, [record["output"] for record in records])


def load_checkpoint(assets: TinyAssets, checkpoint: Path) -> model.ImageBindLLM:
    return model.load(checkpoint, assets.llama_dir, assets.imagebind_path, imagebind_args=imagebind_args(assets),
                      device=DEVICE)


def untrained_model(assets: TinyAssets) -> model.ImageBindLLM:
    """The frozen base with a freshly initialised adapter, as pre-training starts (its gates are zero)."""
    return build_from_files(assets.llama_dir, assets.llama_type, assets.imagebind_path, "pretrain",
                            imagebind_args=imagebind_args(assets), device=DEVICE).eval()


def imagebind_args(assets: TinyAssets) -> dict:
    """The tiny ImageBind's arguments, read as the launchers read --imagebind_config."""
    return read_imagebind_config(assets.imagebind_config)


# -- the evidence ----------------------------------------------------------------------------------

def compare(answers: dict[str, Answers], chance: float | None) -> dict:
    """One entry of summary.json: the truth, and each model's answers and fraction right."""
    first = next(iter(answers.values()))
    entry = {"inputs": first.inputs, "truth": first.truth, "chance": chance}
    for when, said in answers.items():
        entry[f"fraction_{when}"] = said.fraction
        entry[f"generated_{when}"] = said.generated
    return entry


def caption_evidence(assets: TinyAssets, pixels: torch.Tensor, output_dir: Path) -> dict:
    """Captions of the held-out pictures before pre-training (the frozen base) and after it."""
    truth = [picture.caption for picture in assets.held_out_pictures]
    models = {"before": untrained_model(assets), "after": load_checkpoint(assets, output_dir / PRETRAIN / LAST_CHECKPOINT_NAME)}
    answers = {when: ask_about_pictures(llm, assets.held_out_pictures, pixels, CAPTION_INSTRUCTION, truth)
               for when, llm in models.items()}
    evidence = compare(answers, chance=1 / (len(COLOURS) * len(SHAPES)))
    evidence.update(cider_evidence(answers, truth))
    return evidence


def cider_evidence(answers: dict[str, Answers], truth: list[str]) -> dict:
    """CIDEr of each model's captions against the truth, as evaluation/ computes it (pycocoevalcap;
    None where Java is missing: the demo runs without it)."""
    try:
        require_java()
    except JavaNotFoundError as missing:
        logger.warning("no CIDEr in the report: %s", missing)
        return {f"cider_{when}": None for when in answers}
    references = {str(index): [caption] for index, caption in enumerate(truth)}
    return {f"cider_{when}": caption_scores({str(i): [text.strip()] for i, text in enumerate(said.generated)},
                                            references)["CIDEr"]
            for when, said in answers.items()}


def instruction_evidence(assets: TinyAssets, pixels: torch.Tensor, output_dir: Path) -> dict[str, dict]:
    """Each question about the held-out pictures, and the text-only instructions, before fine-tuning
    (the pre-trained model) and after it."""
    models = {"before": load_checkpoint(assets, output_dir / PRETRAIN / LAST_CHECKPOINT_NAME),
              "after": load_checkpoint(assets, output_dir / FINETUNE / LAST_CHECKPOINT_NAME)}
    evidence = {}
    for question, chance in QUESTION_CHANCE.items():
        truth = [dict(picture.questions_and_answers)[question] for picture in assets.held_out_pictures]
        answers = {when: ask_about_pictures(llm, assets.held_out_pictures, pixels, question, truth)
                   for when, llm in models.items()}
        evidence[question] = compare(answers, chance)
    records = alpaca_records()
    evidence[TEXT_ONLY] = compare({when: ask_without_picture(llm, records) for when, llm in models.items()}, None)
    evidence[YES_NO] = yes_no_evidence(models, assets.held_out_pictures, pixels)
    return evidence


def held_out_yes_no(pictures: Sequence[Picture]) -> list[tuple[int, str, str]]:
    """(picture index, question, right answer): about each picture's own colour and another colour."""
    questions = []
    for index, picture in enumerate(pictures):
        for colour in (picture.colour, other_colour(picture.colour, index)):
            questions.append((index, *picture.yes_no(colour)))
    return questions


def yes_no_evidence(models: dict[str, model.ImageBindLLM], pictures: Sequence[Picture], pixels: torch.Tensor) -> dict:
    """The yes/no questions (held_out_yes_no) asked of each model; exactly right answers, and the yes
    or no in them scored as evaluation/ scores POPE (accuracy; precision and recall of "yes")."""
    questions = held_out_yes_no(pictures)
    indices = [index for index, _, _ in questions]
    asked = [pictures[index] for index in indices]
    truth = [answer for _, _, answer in questions]
    answers = {when: ask_about_pictures(llm, asked, pixels[indices], [question for _, question, _ in questions], truth)
               for when, llm in models.items()}
    evidence = compare(answers, chance=0.5)
    labels = {str(key): parse_yes_no(answer) for key, answer in enumerate(truth)}
    for when, said in answers.items():
        scores = yes_no_scores({str(key): parse_yes_no(text) for key, text in enumerate(said.generated)}, labels)
        evidence.update({f"{name}_{when}": getattr(scores, name) for name in ("accuracy", "precision", "recall")})
    return evidence


def collect_evidence(output_dir: Path) -> dict:
    """Everything summary.json holds (see the module docstring)."""
    assets = read_tiny_assets(output_dir / ASSETS)
    pixels = load_pixels(assets.held_out_pictures)
    return {
        "pretrain_loss": first_and_last(epoch_records(output_dir / PRETRAIN), ("train_loss", "val_loss")),
        "finetune_loss": first_and_last(epoch_records(output_dir / FINETUNE), ("train_loss",)),
        "captions": caption_evidence(assets, pixels, output_dir),
        "instructions": instruction_evidence(assets, pixels, output_dir),
    }


# -- the report ------------------------------------------------------------------------------------

def _loss_line(name: str, losses: dict, key: str) -> str:
    first, last = losses["first_epoch"], losses["last_epoch"]
    return f"  {name:<34} {first[key]:.3f} (epoch {first['epoch']})  ->  {last[key]:.3f} (epoch {last['epoch']})"


def _right(entry: dict, when: str) -> str:
    total = len(entry["truth"])
    return f"{round(entry[f'fraction_{when}'] * total)}/{total} ({entry[f'fraction_{when}']:.0%})"


def _caption_lines(captions: dict) -> list[str]:
    pictures = captions["inputs"]
    lines = [f"Captions of {len(pictures)} held-out pictures (\"{CAPTION_INSTRUCTION}\"):",
             f"  {'picture':<18} {'truth':<20} after pre-training"]
    for picture, truth, said in zip(pictures, captions["truth"], captions["generated_after"]):
        lines.append(f"  {picture:<18} {truth:<20} {said!r:<24} {'right' if said.strip() == truth else 'WRONG'}")
    said_most, count = Counter(captions["generated_before"]).most_common(1)[0]
    return lines + [
        f"  exactly right after pre-training:     {_right(captions, 'after')}",
        f"  before it (the frozen base alone):    {_right(captions, 'before')}: "
        f"{said_most!r} for {count} of {len(pictures)} pictures",
        f"  chance (one of {round(1 / captions['chance'])} captions):          {captions['chance']:.0%}",
        f"  CIDEr after pre-training:             {_cider(captions, 'after')} (before it: {_cider(captions, 'before')})",
    ]


def _cider(captions: dict, when: str) -> str:
    value = captions.get(f"cider_{when}")
    return "needs Java" if value is None else f"{value:.3f}"


def _instruction_lines(instructions: dict) -> list[str]:
    lines = ["Instructions (held-out pictures); before fine-tuning = the pre-trained model:"]
    for question, entry in instructions.items():
        asked = f"{question} (no picture; the fine-tuning records)" if entry["chance"] is None else repr(question)
        chance = "" if entry["chance"] is None else f", chance {entry['chance']:.0%}"
        lines.append(f"  {asked}: right {_right(entry, 'after')} after, {_right(entry, 'before')} before{chance}")
        if "accuracy_after" in entry:  # the yes/no questions: the yes or no alone, as POPE scores it
            lines.append(f"    their yes or no: accuracy {entry['accuracy_after']:.0%} after, "
                         f"{entry['accuracy_before']:.0%} before; after: precision {entry['precision_after']:.0%}, "
                         f"recall {entry['recall_after']:.0%} (of the yes answers)")
        count = len(entry["truth"])
        for index in range(0, count, -(-count // EXAMPLES)):  # EXAMPLES of them, spread over the list
            asked, truth, after, before = (entry[key][index] for key in
                                           ("inputs", "truth", "generated_after", "generated_before"))
            lines.append(f"      {asked:<38} truth {truth!r:<14} after {after!r:<16} before {before!r}")
    return lines


def format_report(evidence: dict) -> str:
    """The evidence as the text the demo prints."""
    lines = ["", "== What the demo learned ==", "", "Loss per answer token, first epoch -> last:",
             _loss_line("pre-training, training pictures", evidence["pretrain_loss"], "train_loss"),
             _loss_line("pre-training, held-out pictures", evidence["pretrain_loss"], "val_loss"),
             _loss_line("fine-tuning, instructions", evidence["finetune_loss"], "train_loss"), ""]
    lines += _caption_lines(evidence["captions"]) + [""]
    lines += _instruction_lines(evidence["instructions"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report what exps/demo.sh learned (see exps/demo_report.py).")
    parser.add_argument("output_dir", type=Path, help="the demo's output folder")
    args = parser.parse_args(argv)
    init_logger(0)
    torch.manual_seed(0)
    evidence = collect_evidence(args.output_dir)
    (args.output_dir / "summary.json").write_text(json.dumps(evidence, indent=1), encoding="utf-8")
    report = format_report(evidence)
    (args.output_dir / "summary.txt").write_text(report, encoding="utf-8")
    logger.info("%s(also in %s and, as numbers, %s)", report, args.output_dir / "summary.txt",
                args.output_dir / "summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
