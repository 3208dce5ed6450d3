"""Tiny stand-ins for every file a real run needs, made in seconds with nothing downloaded.

    from exps.tiny_assets import write_tiny_assets
    assets = write_tiny_assets("/tmp/tiny")
    # assets.llama_dir, assets.imagebind_path, assets.imagebind_config, assets.pretrain_config, ...
    assets = read_tiny_assets("/tmp/tiny")  # the same paths again, later, from assets.json

    python -m exps.tiny_assets ROOT [--train_pictures N] [--held_out_pictures N] [--language_model_steps N]

What it writes under `root` (fixed seeds: the same bytes every time):

    llama/tokenizer.model              SentencePiece trained on the texts below (LLaMA's special ids)
    llama/tiny/params.json             Meta's params.json (vocab_size -1: the tokenizer's size)
    llama/tiny/consolidated.00.pth     weights in Meta's layout, float16 as Meta ships them: random,
                                       or (language_model_steps) a small language model of the texts
    imagebind/tiny.pth, tiny.yaml      random ImageBind weights and their ImageBindModel arguments
    shapes/pictures/*.png              coloured shapes; the caption names colour and shape
    shapes/train.tsv, held_out.tsv     url<TAB>caption tables (urls relative to the table)
    shapes/alpaca.json, llava.json     instruction data: text-only and about the pictures
    pretrain.yaml, held_out.yaml, finetune.yaml   data configs (META: lists)
    assets.json                        what this function returned (read_tiny_assets)

The captions can be learned from the pictures (colour and shape are visible, and vary
independently), so a short pre-training run on them shows a falling loss. The pictures are
small; the training transform scales them to ImageBind's 224 x 224.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from PIL import Image, ImageDraw

from exps.tiny_language_model import train_language_model
from model.files.llama_folder import TOKENIZER_NAME
from model.files.meta_folder import write_llama_folder
from model.imagebind import ImageBindModel
from model.llama import ModelArgs
from model.tokenizer import CAPTION_INSTRUCTION, format_prompt, train_tokenizer
from util.log import init_logger

logger = logging.getLogger(__name__)

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
COMBINATIONS = [(colour, shape) for colour in COLOURS for shape in SHAPES]  # every picture kind, in a fixed order
PICTURE_SIZE = 64
BACKGROUND = (235, 235, 235)  # light grey
# The shape's radius as a fraction of the picture's side. A random ImageBind's embedding tells
# shapes apart mostly by the area they cover: within this narrow range of sizes every circle covers
# more pixels than any triangle and fewer than any square, so the shape can be learned from it.
RADIUS_RANGE = (0.35, 0.38)
# What the instruction data (LLaVA style) asks about each picture.
COLOUR_QUESTION = "What colour is the shape?"
SHAPE_QUESTION = "What shape is it?"
# And a yes/no question about a colour: asked about each picture's own colour and another
# (yes_no_colours); yes_no_answer says why the answer names the colour first.
YES_NO_QUESTION = "Is the shape {colour}?"
LLAMA_TYPE = "tiny"
MANIFEST_NAME = "assets.json"
# Enough pieces for every word of the tiny texts to be one token (256 of them are byte fallbacks).
TOKENIZER_VOCAB = 512

# Meta's params.json fields for a two-layer LLaMA of width 64.
TINY_LLAMA_PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "multiple_of": 32, "norm_eps": 1e-5, "vocab_size": -1}

# ImageBindModel arguments: every branch one block, a few heads, narrow. (The text branch's
# 49408-row token table makes this file about 3 MB.)
TINY_IMAGEBIND_ARGS = {
    "out_embed_dim": 32,
    "vision_embed_dim": 32, "vision_num_blocks": 1, "vision_num_heads": 2,
    "text_embed_dim": 16, "text_num_blocks": 1, "text_num_heads": 2,
    "audio_embed_dim": 16, "audio_num_blocks": 1, "audio_num_heads": 2,
    "depth_embed_dim": 16, "depth_num_blocks": 1, "depth_num_heads": 2,
    "thermal_embed_dim": 16, "thermal_num_blocks": 1, "thermal_num_heads": 2,
    "imu_embed_dim": 16, "imu_num_blocks": 1, "imu_num_heads": 2,
    # The 3D branch too (its point-group encoder and projection have fixed sizes: about 0.9 MB).
    "point_branch": True, "point_embed_dim": 16, "point_num_blocks": 1, "point_num_heads": 2,
}


def caption_of(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def answers_of(colour: str, shape: str) -> tuple[str, str]:
    """The right answers to COLOUR_QUESTION and SHAPE_QUESTION."""
    return f"It is {colour}.", f"A {shape}."


def yes_no_answer(colour: str, asked_colour: str) -> str:
    """The right answer to YES_NO_QUESTION about `asked_colour` for a shape of `colour`:
    "Red? It is blue, so no."

    It repeats the colour asked about and names the colour it sees before it says yes or no, as a
    person explaining would: the yes or no then follows two colour words a few tokens back, which a
    language model compares easily (the demo's base learns to: language_model_texts), instead of
    a word of the question with the picture, which the two-layer demo model learns too slowly for a
    one-minute demo. The scorers (evaluation.choice_metrics.parse_yes_no) read the yes or no.
    """
    return f"{asked_colour.capitalize()}? It is {colour}, so {'yes' if colour == asked_colour else 'no'}."


def other_colour(colour: str, turn: int) -> str:
    """One of the colours that is not `colour`: each in turn as `turn` counts up."""
    names = list(COLOURS)
    return names[(names.index(colour) + 1 + turn % (len(names) - 1)) % len(names)]


def yes_no_colours(colour: str, index: int) -> tuple[str, str]:
    """The colours the yes/no questions about picture `index` (of `colour`) ask about: its own
    (yes) and another (no), each other colour in turn, in either order. Both about every picture:
    one alone would let the model learn the answer from the picture, not from the question."""
    other = other_colour(colour, index)
    return (colour, other) if index % 2 == 0 else (other, colour)


@dataclass(frozen=True)
class Picture:
    """One generated picture and what it shows."""

    path: Path
    colour: str
    shape: str

    @property
    def caption(self) -> str:
        return caption_of(self.colour, self.shape)

    @property
    def questions_and_answers(self) -> tuple[tuple[str, str], ...]:
        """The instruction data's open questions about this picture, with their right answers."""
        return tuple(zip((COLOUR_QUESTION, SHAPE_QUESTION), answers_of(self.colour, self.shape)))

    def yes_no(self, colour: str) -> tuple[str, str]:
        """YES_NO_QUESTION about `colour`, and its right answer for this picture."""
        return YES_NO_QUESTION.format(colour=colour), yes_no_answer(self.colour, colour)


@dataclass(frozen=True)
class TinyAssets:
    """Paths of everything write_tiny_assets made (see the module docstring)."""

    root: Path
    llama_dir: Path
    llama_type: str
    imagebind_path: Path
    imagebind_config: Path
    pretrain_config: Path
    held_out_config: Path
    finetune_config: Path
    train_pictures: tuple[Picture, ...]
    held_out_pictures: tuple[Picture, ...]

    @property
    def tokenizer_path(self) -> Path:
        return self.llama_dir / TOKENIZER_NAME

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> TinyAssets:
        values = json.loads(text)
        pictures = {key: tuple(Picture(Path(p["path"]), p["colour"], p["shape"]) for p in values[key])
                    for key in ("train_pictures", "held_out_pictures")}
        paths = {key: Path(value) for key, value in values.items() if key not in pictures and key != "llama_type"}
        return cls(llama_type=values["llama_type"], **paths, **pictures)


# -- pictures and captions -------------------------------------------------------------------------

def draw_shape(colour: str, shape: str, rng: random.Random, size: int = PICTURE_SIZE) -> Image.Image:
    """`shape` in `colour` on a light grey background, at a random place and scale (RADIUS_RANGE)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(*RADIUS_RANGE) * size
    cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "triangle":
        corners = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(corners, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    return image


def write_pictures(folder: Path, count: int, seed: int, prefix: str) -> tuple[Picture, ...]:
    """`count` PNG pictures; colours and shapes cycle through every combination before repeating."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pictures = []
    for index in range(count):
        colour, shape = COMBINATIONS[index % len(COMBINATIONS)]
        path = folder / f"{prefix}_{index:03d}.png"
        draw_shape(colour, shape, rng).save(path)
        pictures.append(Picture(path, colour, shape))
    return tuple(pictures)


def write_caption_table(path: Path, pictures: tuple[Picture, ...]) -> Path:
    """A pre-training meta file: header `url<TAB>caption`, urls relative to the table's folder."""
    lines = ["url\tcaption"] + [f"{os.path.relpath(p.path, path.parent)}\t{p.caption}" for p in pictures]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- instruction data ------------------------------------------------------------------------------

_TEXT_ONLY = [
    ("What colour is a ripe tomato?", "", "Red."),
    ("What colour is grass?", "", "Green."),
    ("What colour is the sky on a clear day?", "", "Blue."),
    ("What colour is a banana?", "", "Yellow."),
    ("Name the shape.", "It is round.", "A circle."),
    ("Name the shape.", "It has four equal sides.", "A square."),
    ("Name the shape.", "It has three corners.", "A triangle."),
    ("Name three colours.", "", "Red, green and blue."),
]


def alpaca_records() -> list[dict]:
    """Text-only instructions (Alpaca's fields)."""
    return [{"instruction": q, "input": i, "output": a} for q, i, a in _TEXT_ONLY]


def llava_records(pictures: tuple[Picture, ...], image_root: Path) -> list[dict]:
    """Four-turn conversations about each picture (LLaVA's fields); `image` relative to image_root:
    its colour, its shape, and yes/no questions about its own colour and another (yes_no_colours).

    The order of the questions turns from one group of pictures to the next, so that each question
    is also asked first, as a single question at inference is. (Turned by groups of a colour, a
    round of COMBINATIONS apart: every colour and every shape sees every order.)
    """
    records = []
    for index, picture in enumerate(pictures):
        exchanges = [*picture.questions_and_answers, *map(picture.yes_no, yes_no_colours(picture.colour, index))]
        turn = (index // len(SHAPES) + index // len(COMBINATIONS)) % len(exchanges)
        exchanges = exchanges[turn:] + exchanges[:turn]
        conversation = []
        for turn, (question, answer) in enumerate(exchanges):
            conversation.append({"from": "human", "value": "<image>\n" + question if turn == 0 else question})
            conversation.append({"from": "gpt", "value": answer})
        records.append({"id": f"shape-{index}", "image": os.path.relpath(picture.path, image_root),
                        "conversations": conversation})
    return records


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


def write_data_config(path: Path, entries: list[str | dict]) -> Path:
    """A YAML data config listing `entries` (paths, or mappings with per-file options) under META."""
    path.write_text(yaml.safe_dump({"META": entries}, sort_keys=False), encoding="utf-8")
    return path


# -- model files -----------------------------------------------------------------------------------

def tokenizer_texts() -> list[str]:
    """Everything the tiny runs tokenize, so that their encodings are short."""
    texts = [format_prompt(CAPTION_INSTRUCTION)]
    texts += [caption_of(*kind) for kind in COMBINATIONS]
    texts += [format_prompt(q, i) + " " + a for q, i, a in _TEXT_ONLY]
    texts += [format_prompt(COLOUR_QUESTION), format_prompt(SHAPE_QUESTION)]
    texts += [format_prompt(YES_NO_QUESTION.format(colour=colour)) for colour in COLOURS]
    texts += [" ".join(answers_of(*kind)) for kind in COMBINATIONS]
    texts += [yes_no_answer(colour, asked) for colour in COLOURS for asked in COLOURS]
    return texts * 10


def meta_llama_state_dict(params: dict, vocab_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random float32 weights with the names and shapes of Meta's consolidated.00.pth for `params`.

    Matrices ~ N(0, 1/fan_in) so that activations keep their scale through the layers; norms are 1.
    The names are listed here, in a fixed order, so that the draws (and the demo's files) do not
    depend on the order in which model/llama.py registers its modules.
    """
    args = ModelArgs.from_params(params, vocab_size=vocab_size)
    dim, hidden = args.dim, args.ffn_hidden_dim
    kv_dim = args.kv_heads * args.head_dim

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=generator) / math.sqrt(cols)

    weights = {"tok_embeddings.weight": torch.randn(vocab_size, dim, generator=generator)}
    for layer in range(params["n_layers"]):
        prefix = f"layers.{layer}."
        weights.update({
            prefix + "attention.wq.weight": matrix(dim, dim),
            prefix + "attention.wk.weight": matrix(kv_dim, dim),
            prefix + "attention.wv.weight": matrix(kv_dim, dim),
            prefix + "attention.wo.weight": matrix(dim, dim),
            prefix + "feed_forward.w1.weight": matrix(hidden, dim),
            prefix + "feed_forward.w2.weight": matrix(dim, hidden),
            prefix + "feed_forward.w3.weight": matrix(hidden, dim),
            prefix + "attention_norm.weight": torch.ones(dim),
            prefix + "ffn_norm.weight": torch.ones(dim),
        })
    weights["norm.weight"] = torch.ones(dim)
    weights["output.weight"] = matrix(vocab_size, dim)
    return weights


def language_model_texts() -> list[str]:
    """What a language-model base reads before it is frozen (see exps/tiny_language_model.py): the
    caption prompt with each caption, and the instruction data's answers as plain sentences. No
    instruction is ever followed by its answer: following instructions is fine-tuning's to teach."""
    texts = [format_prompt(CAPTION_INSTRUCTION) + caption_of(*kind) for kind in COMBINATIONS]
    texts += [" ".join(answers_of(*kind)) for kind in COMBINATIONS]
    # What any language model knows: a shape of one colour is not of another. (Blind, it cannot
    # answer about a picture: the colour it names here is any colour.)
    texts += [yes_no_answer(colour, asked) for colour in COLOURS for asked in COLOURS]
    texts += [answer for _, _, answer in _TEXT_ONLY]
    return texts


def write_tiny_llama(llama_dir: Path, seed: int, llama_type: str = LLAMA_TYPE,
                     params: dict | None = None, language_model_steps: int = 0) -> Path:
    """LLAMA_DIR/tokenizer.model and LLAMA_DIR/<llama_type>/{params.json, consolidated.00.pth}.

    language_model_steps 0: random weights; more: that many steps of next-token training on
    language_model_texts() first (a base that can already write the captions, not pick them).
    """
    params = dict(TINY_LLAMA_PARAMS if params is None else params)
    tokenizer = train_tokenizer(tokenizer_texts(), llama_dir / TOKENIZER_NAME, vocab_size=TOKENIZER_VOCAB)
    generator = torch.Generator().manual_seed(seed)
    weights = meta_llama_state_dict(params, tokenizer.n_words, generator)
    if language_model_steps:
        weights = train_language_model(weights, params, tokenizer, language_model_texts(), language_model_steps)
    return write_llama_folder(llama_dir / llama_type, weights, params, dtype=torch.float16)


def write_tiny_imagebind(weights_path: Path, config_path: Path, seed: int,
                         imagebind_args: dict | None = None) -> None:
    """A random ImageBindModel's weights and, beside them, its arguments as YAML (--imagebind_config)."""
    imagebind_args = dict(TINY_IMAGEBIND_ARGS if imagebind_args is None else imagebind_args)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = ImageBindModel(**imagebind_args).state_dict()
    torch.save(state, weights_path)
    config_path.write_text(yaml.safe_dump(imagebind_args, sort_keys=True), encoding="utf-8")


# -- everything ------------------------------------------------------------------------------------

def write_tiny_assets(root: str | os.PathLike, train_pictures: int = 24, held_out_pictures: int = 12,
                      seed: int = 0, language_model_steps: int = 0) -> TinyAssets:
    """Write every tiny file under `root` (see the module docstring) and return their paths.

    language_model_steps > 0 makes the tiny LLaMA a small language model first (write_tiny_llama).
    """
    root = Path(root).resolve()
    llama_dir = root / "llama"
    write_tiny_llama(llama_dir, seed, language_model_steps=language_model_steps)
    imagebind_path, imagebind_config = root / "imagebind" / "tiny.pth", root / "imagebind" / "tiny.yaml"
    write_tiny_imagebind(imagebind_path, imagebind_config, seed)

    shapes = root / "shapes"
    train = write_pictures(shapes / "pictures", train_pictures, seed, "train")
    held_out = write_pictures(shapes / "pictures", held_out_pictures, seed + 1, "held_out")
    train_table = write_caption_table(shapes / "train.tsv", train)
    held_out_table = write_caption_table(shapes / "held_out.tsv", held_out)
    alpaca = write_json(shapes / "alpaca.json", alpaca_records())
    llava = write_json(shapes / "llava.json", llava_records(train, shapes / "pictures"))
    assets = TinyAssets(
        root=root,
        llama_dir=llama_dir,
        llama_type=LLAMA_TYPE,
        imagebind_path=imagebind_path,
        imagebind_config=imagebind_config,
        pretrain_config=write_data_config(root / "pretrain.yaml", [str(train_table)]),
        held_out_config=write_data_config(root / "held_out.yaml", [str(held_out_table)]),
        # The text-only file is small: its ratio repeats it, four times per pass.
        finetune_config=write_data_config(root / "finetune.yaml", [
            {"path": str(alpaca), "ratio": 4}, {"path": str(llava), "image_root": str(shapes / "pictures")},
        ]),
        train_pictures=train,
        held_out_pictures=held_out,
    )
    (root / MANIFEST_NAME).write_text(assets.to_json(), encoding="utf-8")
    return assets


def read_tiny_assets(root: str | os.PathLike) -> TinyAssets:
    """What write_tiny_assets(root, ...) returned, from the assets.json it wrote there."""
    manifest = Path(root) / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: {root} was not written by exps.tiny_assets.write_tiny_assets")
    return TinyAssets.from_json(manifest.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the tiny stand-in files (see exps/tiny_assets.py).")
    parser.add_argument("root", help="folder to write into")
    parser.add_argument("--train_pictures", type=int, default=24)
    parser.add_argument("--held_out_pictures", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--language_model_steps", type=int, default=0,
                        help="0: a random LLaMA; more: make it a small language model of the tiny texts first")
    args = parser.parse_args(argv)
    init_logger(0)
    assets = write_tiny_assets(args.root, args.train_pictures, args.held_out_pictures, args.seed,
                               args.language_model_steps)
    logger.info("tiny files written under %s (%d training and %d held-out pictures; list: %s)", assets.root,
                len(assets.train_pictures), len(assets.held_out_pictures), assets.root / MANIFEST_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
