"""The base record: a cheap fingerprint that a layout change keeps, and loud warnings when a checkpoint
meets another base than the one it was trained on."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

import model as model_package
from model.files.base_record import base_differences, fingerprint
from model.convert import main as convert_main
from model.files.delta_merge import merge_delta
from model.files.llama_folder import llama_state_dict, open_llama_folder
from model.files.meta_folder import write_llama_folder
from model.files.adapter_checkpoint import read_adapter_checkpoint
from model.files.build import build_from_files
from support.hf_folders import save_hf_folder, tiny_hf_model
from support.tiny_models import TINY_IMAGEBIND, save_checkpoint, split_like_meta, tiny_model, write_user_files

RECORD_LOGGER = "model.files.base_record"


@pytest.fixture
def two_bases(tmp_path, tokenizer, tokenizer_path):
    """LLAMA_DIR with 7B and 7B_chinese (7B + a small delta, as merge-delta makes it), the ImageBind
    file, and a pre-trained adapter (its released layout)."""
    pretrained = tiny_model("pretrain", tokenizer=tokenizer).eval()
    llama_dir, imagebind_path = write_user_files(tmp_path, pretrained, tokenizer_path, llama_type="7B")
    base = torch.load(llama_dir / "7B" / "consolidated.00.pth")
    gen = torch.Generator().manual_seed(5)
    delta = {key: torch.randn(tensor.shape, generator=gen).half() * 1e-2 for key, tensor in base.items()}
    params = json.loads((llama_dir / "7B" / "params.json").read_text())
    write_llama_folder(tmp_path / "delta", delta, params)
    merge_delta(llama_dir / "7B", tmp_path / "delta", llama_dir / "7B_chinese")
    return llama_dir, imagebind_path, pretrained.state_dict_released()


def record_messages(caplog, level=logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RECORD_LOGGER and r.levelno >= level]


def record_levels(caplog) -> list[int]:
    return [r.levelno for r in caplog.records if r.name == RECORD_LOGGER]


def test_fingerprint_is_the_same_for_an_hf_folder_and_its_meta_conversion(tmp_path):
    hf_dir = save_hf_folder(tiny_hf_model(2, 61), tmp_path / "llama" / "hf")
    assert convert_main(["from-hf", str(hf_dir), str(tmp_path / "llama" / "meta")]) == 0
    from_hf = open_llama_folder(tmp_path / "llama", "hf").base_record
    from_meta = open_llama_folder(tmp_path / "llama", "meta").base_record
    assert from_hf["fingerprint"] == from_meta["fingerprint"]
    assert base_differences(from_hf, from_meta) == []
    # Meta's own params.json for the same model says less (vocab -1, no n_kv_heads for multi-head): no difference
    meta_style = {k: v for k, v in from_meta["params"].items() if k != "vocab_size"} | {"vocab_size": -1}
    assert base_differences({**from_hf, "params": meta_style}, from_meta) == []


def test_fingerprint_reads_few_rows_and_sees_every_layout_of_the_same_weights(two_bases, tmp_path):
    llama_dir, _, _ = two_bases
    one = llama_state_dict(llama_dir / "7B")
    split = llama_dir / "7B_two_shards"
    split.mkdir()
    shutil.copy(llama_dir / "7B" / "params.json", split)
    for i, shard in enumerate(split_like_meta(dict(one), 2)):  # rows, columns and replicated norms
        torch.save(shard, split / f"consolidated.{i:02d}.pth")
    assert fingerprint(llama_state_dict(split)) == fingerprint(one)
    assert fingerprint(llama_state_dict(llama_dir / "7B_chinese")) != fingerprint(one)


def test_a_checkpoint_on_another_base_warns_naming_both(two_bases, tmp_path, caplog):
    llama_dir, imagebind_path, released = two_bases
    chinese = open_llama_folder(llama_dir, "7B_chinese").base_record
    checkpoint = save_checkpoint(tmp_path / "pretrained.pth", released, base=chinese)
    meta = open_llama_folder(llama_dir, "7B").base_record
    with caplog.at_level(logging.INFO):
        build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND, checkpoint=checkpoint)
    warnings = record_messages(caplog)
    assert len(warnings) == 1
    assert "another LLaMA base" in warnings[0] and str(checkpoint) in warnings[0]
    assert f"checkpoint's base: 7B_chinese (fingerprint {chinese['fingerprint']})" in warnings[0]
    assert f"loaded base:       7B at {llama_dir / '7B'} (fingerprint {meta['fingerprint']})" in warnings[0]
    assert "--llama_type 7B_chinese" in warnings[0]


def test_a_checkpoint_on_its_own_base_says_nothing(two_bases, tmp_path, caplog):
    llama_dir, imagebind_path, released = two_bases
    chinese = open_llama_folder(llama_dir, "7B_chinese").base_record
    checkpoint = save_checkpoint(tmp_path / "pretrained.pth", released, base=chinese)
    assert read_adapter_checkpoint(checkpoint).base == chinese
    with caplog.at_level(logging.DEBUG):
        build_from_files(llama_dir, None, imagebind_path, "finetune", TINY_IMAGEBIND, checkpoint=checkpoint)
        model_package.load(checkpoint, llama_dir, imagebind_path, imagebind_args=TINY_IMAGEBIND, device="cpu")
    assert record_messages(caplog, logging.DEBUG) == []


def test_model_load_warns_on_another_base(two_bases, tmp_path, caplog):
    llama_dir, imagebind_path, released = two_bases
    chinese = open_llama_folder(llama_dir, "7B_chinese").base_record
    checkpoint = save_checkpoint(tmp_path / "pretrained.pth", released, base=chinese)
    with caplog.at_level(logging.WARNING):
        model_package.load(checkpoint, llama_dir, imagebind_path, llama_type="7B", imagebind_args=TINY_IMAGEBIND,
                           device="cpu")
    assert len(record_messages(caplog)) == 1


def test_a_file_without_a_record_says_the_released_note_once(two_bases, tmp_path, caplog):
    llama_dir, imagebind_path, released = two_bases
    checkpoint = save_checkpoint(tmp_path / "7B-pretrained.pth", released)
    assert read_adapter_checkpoint(checkpoint).base is None
    with caplog.at_level(logging.INFO):
        build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND, checkpoint=checkpoint)
    notes = record_messages(caplog, logging.INFO)
    assert len(notes) == 1 and record_levels(caplog) == [logging.WARNING]  # 7B is not the released files' base
    assert "carries no base record" in notes[0] and "Open-Chinese-LLaMA-7B" in notes[0] and "merge-delta" in notes[0]
