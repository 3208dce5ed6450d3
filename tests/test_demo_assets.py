"""The choices that let exps/demo.sh learn on tiny random models: seconds, on the CPU.

The facts: within RADIUS_RANGE the three shapes never cover the same area (a random ImageBind
tells them apart by it); the tiny tokenizer keeps every caption word whole; the language-model base
learns the captions' text (its loss falls to near the entropy of the choices left open) and keeps
Meta's names, shapes and float16; every picture question is also asked first in the instruction
data, and the yes/no questions ask about each picture's own colour and another; assets.json gives back what write_tiny_assets returned.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from exps.tiny_assets import (BACKGROUND, COLOUR_QUESTION, COLOURS, COMBINATIONS, SHAPE_QUESTION, SHAPES, Picture,
                              draw_shape, language_model_texts, llava_records, meta_llama_state_dict, other_colour,
                              read_tiny_assets, write_pictures, write_tiny_assets, yes_no_colours)
from exps.tiny_language_model import next_token_loss, token_batch, train_language_model
from model.llama import ModelArgs, Transformer
from model.tokenizer import Tokenizer

PARAMS = {"dim": 32, "n_layers": 1, "n_heads": 2, "multiple_of": 16, "norm_eps": 1e-5, "vocab_size": -1}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_tiny_assets(tmp_path_factory.mktemp("assets"), train_pictures=4, held_out_pictures=2)


@pytest.fixture
def one_thread():
    """Tiny matrices: a second thread only waits on the first (five times slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def covered_pixels(image) -> int:
    return int((np.asarray(image) != BACKGROUND).any(axis=-1).sum())


def test_within_the_radius_range_the_shapes_never_cover_the_same_area():
    rng = random.Random(0)
    areas = {shape: [covered_pixels(draw_shape("red", shape, rng)) for _ in range(200)] for shape in SHAPES}
    assert max(areas["triangle"]) < min(areas["circle"]) and max(areas["circle"]) < min(areas["square"])


def test_every_caption_word_is_one_token(assets):
    tokenizer = Tokenizer(assets.tokenizer_path)
    for colour in COLOURS:
        for shape in SHAPES:
            pieces = tokenizer.sp_model.encode(f"a {colour} {shape}", out_type=str)
            assert pieces == ["▁a", f"▁{colour}", f"▁{shape}"]


def test_the_language_model_learns_the_texts_and_keeps_metas_layout(assets, one_thread):
    tokenizer = Tokenizer(assets.tokenizer_path)
    texts = language_model_texts()
    random_weights = meta_llama_state_dict(PARAMS, tokenizer.n_words, torch.Generator().manual_seed(0))
    trained = train_language_model(random_weights, PARAMS, tokenizer, texts, steps=60, lr=1e-2)
    assert {key: value.shape for key, value in trained.items()} == {
        key: value.shape for key, value in random_weights.items()}

    def loss(weights) -> float:
        tokens = token_batch(tokenizer, texts)
        model = Transformer(ModelArgs.from_params(PARAMS, vocab_size=tokenizer.n_words, max_seq_len=tokens.shape[1]))
        model.load_state_dict(weights)
        with torch.no_grad():
            return next_token_loss(model, tokens).item()

    assert loss(random_weights) > math.log(tokenizer.n_words) / 2
    assert loss(trained) < 0.5  # the floor, what the texts leave open (which colour, which shape), is about 0.2


def test_the_base_is_written_in_float16_as_meta_ships_it(tmp_path, one_thread):
    small = write_tiny_assets(tmp_path, train_pictures=1, held_out_pictures=1, language_model_steps=2)
    shard = torch.load(small.llama_dir / small.llama_type / "consolidated.00.pth", weights_only=True)
    assert {tensor.dtype for tensor in shard.values()} == {torch.float16}


def test_each_question_is_asked_first_in_a_quarter_of_the_conversations_for_every_colour(tmp_path):
    rounds = 4  # the demo's 48 training pictures
    pictures = write_pictures(tmp_path, rounds * len(COMBINATIONS), seed=0, prefix="p")
    records = llava_records(pictures, tmp_path)
    assert all(len(record["conversations"]) == 8 for record in records)

    def kind(question: str, picture: Picture) -> str:  # which of the four questions
        return question if question in (COLOUR_QUESTION, SHAPE_QUESTION) else f"yes/no: {picture.colour in question}"

    first = [(picture.colour, kind(record["conversations"][0]["value"].removeprefix("<image>\n"), picture))
             for record, picture in zip(records, pictures)]
    assert set(Counter(first).values()) == {len(SHAPES)}  # every colour sees each question first, equally often
    assert len(Counter(first)) == len(COLOURS) * 4


def test_every_picture_is_asked_yes_or_no_about_its_own_colour_and_another():
    for colour in COLOURS:
        for index in range(6):
            asked = yes_no_colours(colour, index)
            assert sorted(asked.count(name) for name in COLOURS) == [0, 0, 1, 1] and colour in asked
        assert {other_colour(colour, turn) for turn in range(3)} == set(COLOURS) - {colour}
    picture = Picture(Path("p.png"), "blue", "square")
    assert picture.yes_no("blue") == ("Is the shape blue?", "Blue? It is blue, so yes.")
    assert picture.yes_no("red") == ("Is the shape red?", "Red? It is blue, so no.")


def test_assets_json_gives_back_what_write_tiny_assets_returned(assets):
    assert read_tiny_assets(assets.root) == assets
    with pytest.raises(FileNotFoundError, match="was not written by exps.tiny_assets.write_tiny_assets"):
        read_tiny_assets(assets.root / "shapes")
