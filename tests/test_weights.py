"""Loading files: Meta's LLaMA folders and shards, the ImageBind file, adapter checkpoints, model.load."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import model as model_package
from model.files.llama_folder import choose_llama_type, llama_model_dir, open_llama_folder
from model.files.meta_folder import merged_llama_state_dict
from model.files.adapter_checkpoint import CheckpointFileError, read_adapter_checkpoint
from model.files.build import build_from_files
from support.tiny_models import (
    TINY_IMAGEBIND, all_logits, random_images, random_tokens, save_checkpoint, split_like_meta, tiny_model,
    write_user_files,
)

# How Meta's model-parallel files split each weight (fairscale: ColumnParallelLinear by output rows,
# RowParallelLinear by input columns, ParallelEmbedding by embedding width; norms replicated).
@pytest.fixture
def source(tokenizer):
    return tiny_model("finetune", tokenizer=tokenizer).eval()


@pytest.fixture
def user_files(tmp_path, source, tokenizer_path):
    return write_user_files(tmp_path, source, tokenizer_path)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different[:5]


def test_two_meta_shards_load_equal_to_one(tmp_path, source, user_files):
    llama_dir, imagebind_path = user_files
    one = llama_dir / "7B"
    two = llama_dir / "7B_split"
    two.mkdir()
    (two / "params.json").write_text((one / "params.json").read_text())
    whole = torch.load(one / "consolidated.00.pth")
    for i, shard in enumerate(split_like_meta(whole, 2)):
        shard["rope.freqs"] = torch.ones(4)  # Meta's files may carry it: ignored
        torch.save(shard, two / f"consolidated.{i:02d}.pth")
    merged = merged_llama_state_dict(two)
    assert_same_tensors(dict(merged), whole)
    from_two = build_from_files(llama_dir, "7B_split", imagebind_path, "finetune", TINY_IMAGEBIND)
    assert_same_tensors({k: v for k, v in from_two.llama.state_dict().items() if k in whole}, whole)


def test_build_from_files_takes_frozen_tensors_from_files_and_initialises_the_rest(source, user_files):
    llama_dir, imagebind_path = user_files
    built = build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND)
    file_keys = set(torch.load(llama_dir / "7B" / "consolidated.00.pth"))
    assert_same_tensors({k: v for k, v in built.llama.state_dict().items() if k in file_keys},
                        {k: v for k, v in source.llama.state_dict().items() if k in file_keys})
    assert_same_tensors(built.image_bind.state_dict(), source.image_bind.state_dict())
    positions = source.llama.args.max_seq_len  # the built model covers more (max_seq_len is not in params.json)
    assert torch.equal(built.llama.rope_cos[:positions], source.llama.rope_cos)
    assert torch.equal(built.llama.rope_sin[:positions], source.llama.rope_sin)
    layer = built.llama.layers[0]
    for zero in (layer.attention.gate, layer.attention.wq.bias, layer.feed_forward.w2.bias,
                 layer.attention.lora_wk_l2.weight, layer.feed_forward.lora_w3_l2.weight):
        assert not zero.any()
    assert layer.attention.lora_wk_l1.weight.std() > 0 and built.image_bind_f1_2.weight.std() > 0
    assert torch.equal(built.image_bind_norm_3.weight, torch.ones(32))


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
@pytest.mark.parametrize("prefix", ["llama.", "llma."])
def test_released_layout_round_trip_is_exact(tmp_path, tokenizer, tokenizer_path, phase, prefix):
    source = tiny_model(phase, tokenizer=tokenizer).eval()
    llama_dir, imagebind_path = write_user_files(tmp_path, source, tokenizer_path)
    released = {prefix + k[len("llama."):] if k.startswith("llama.") else k: v
                for k, v in source.state_dict_released().items()}
    checkpoint = save_checkpoint(tmp_path / "released.pth", released)
    built = build_from_files(llama_dir, "7B", imagebind_path, phase, TINY_IMAGEBIND, checkpoint=checkpoint)
    assert_same_tensors(built.state_dict(), source.state_dict())
    tokens, images = random_tokens(2, 8, 64), random_images(2)
    with torch.no_grad():
        assert torch.equal(all_logits(built, tokens, images), all_logits(source, tokens, images))


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path, source, user_files):
    llama_dir, imagebind_path = user_files
    released = source.state_dict_released()
    released["prefix_query.weight"] = torch.zeros(3, 32)
    checkpoint = save_checkpoint(tmp_path / "bad.pth", released)
    with pytest.raises(ValueError, match=r"prefix_query\.weight has shape \(3, 32\) in the file but \(2, 32\) in the model"):
        build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND, checkpoint=checkpoint)


def test_tensors_the_model_lacks_are_an_error(tmp_path, source, user_files):
    llama_dir, imagebind_path = user_files
    checkpoint = save_checkpoint(tmp_path / "finetuned.pth", source.state_dict_released())
    with pytest.raises(KeyError, match="lora_w"):  # a fine-tuned file into a pre-training model
        build_from_files(llama_dir, "7B", imagebind_path, "pretrain", TINY_IMAGEBIND, checkpoint=checkpoint)


def test_a_pretrained_file_starts_fine_tuning_with_fresh_bias_and_lora(tmp_path, tokenizer, tokenizer_path, caplog):
    pretrained = tiny_model("pretrain", tokenizer=tokenizer).eval()
    llama_dir, imagebind_path = write_user_files(tmp_path, pretrained, tokenizer_path)
    checkpoint = save_checkpoint(tmp_path / "pretrained.pth", pretrained.state_dict_released())
    with caplog.at_level(logging.INFO, logger="model.files.build"):
        built = build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND, checkpoint=checkpoint)
    n_pretrained, n_finetuned = len(pretrained.state_dict_released()), len(built.state_dict_released())
    assert f"pretrained.pth: loaded {n_pretrained} tensors\n" in caplog.text and "missing" not in caplog.text
    assert f"biases and LoRA factors: {n_finetuned - n_pretrained} tensors start at their initial values" in caplog.text
    tokens, images = random_tokens(2, 8, 64), random_images(2)
    with torch.no_grad():  # zero biases and LoRA: the pre-trained model's output
        torch.testing.assert_close(all_logits(built, tokens, images), all_logits(pretrained, tokens, images),
                                   rtol=0, atol=1e-6)


def test_missing_files_are_clear_errors(tmp_path, user_files):
    llama_dir, imagebind_path = user_files
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_from_files(llama_dir, "7B", tmp_path / "nowhere.pth", "pretrain", TINY_IMAGEBIND)
    with pytest.raises(FileNotFoundError, match=r"7B_chinese.*holds 7B, tokenizer.model"):
        llama_model_dir(llama_dir, "7B_chinese")
    partial = torch.load(llama_dir / "7B" / "consolidated.00.pth")
    del partial["layers.1.feed_forward.w2.weight"]
    torch.save(partial, llama_dir / "7B" / "consolidated.00.pth")
    with pytest.raises(KeyError, match=r"layers\.1\.feed_forward\.w2\.weight"):
        build_from_files(llama_dir, "7B", imagebind_path, "pretrain", TINY_IMAGEBIND)


def test_llama_type_is_the_recorded_base_else_the_only_folder_else_7b_chinese(tmp_path):
    (tmp_path / "13B").mkdir()
    (tmp_path / "13B" / "params.json").write_text("{}")
    assert choose_llama_type(tmp_path) == "13B"
    assert choose_llama_type(tmp_path, recorded="7B") == "7B"
    (tmp_path / "7B").mkdir()
    (tmp_path / "7B" / "params.json").write_text("{}")
    assert choose_llama_type(tmp_path) == "7B_chinese"


def test_model_load_generates_from_a_released_file(tmp_path, source, user_files):
    llama_dir, imagebind_path = user_files
    checkpoint = save_checkpoint(tmp_path / "7B.pth", source.state_dict_released())
    loaded = model_package.load(checkpoint, llama_dir, imagebind_path, imagebind_args=TINY_IMAGEBIND, device="cpu")
    assert loaded.phase == "finetune" and not loaded.training and loaded.llama.args.w_lora
    image = {"Image": [random_images(1), 1]}
    prompt = ["What is in the image?"]
    texts = loaded.generate(image, prompt, max_gen_len=6, temperature=0.0)
    assert texts == source.generate(image, prompt, max_gen_len=6, temperature=0.0)
    assert isinstance(texts[0], str)


def test_model_load_reads_what_our_checkpoints_record(tmp_path, tokenizer, tokenizer_path):
    pretrained = tiny_model("pretrain", tokenizer=tokenizer).eval()
    llama_dir, imagebind_path = write_user_files(tmp_path, pretrained, tokenizer_path, llama_type="tiny_base")
    params = json.loads((llama_dir / "tiny_base" / "params.json").read_text())
    params["vocab_size"] = -1  # as Meta writes it: the tokenizer decides
    (llama_dir / "tiny_base" / "params.json").write_text(json.dumps(params))
    (llama_dir / "other_base").mkdir()  # two bases: only the record can choose
    (llama_dir / "other_base" / "params.json").write_text(json.dumps(params))
    base = open_llama_folder(llama_dir, "tiny_base").base_record
    checkpoint = save_checkpoint(tmp_path / "checkpoint-3.pth", pretrained.state_dict_released(), base=base,
                                 imagebind_args=TINY_IMAGEBIND, epoch=3)
    assert read_adapter_checkpoint(checkpoint).llama_type == "tiny_base"
    loaded = model_package.load(checkpoint, llama_dir, imagebind_path, device="cpu")
    assert loaded.phase == "pretrain" and loaded.llama.args.vocab_size == tokenizer.n_words
    assert_same_tensors(loaded.state_dict(), pretrained.state_dict())


def test_frozen_dtype_applies_to_file_tensors(source, user_files):
    llama_dir, imagebind_path = user_files
    built = build_from_files(llama_dir, "7B", imagebind_path, "finetune", TINY_IMAGEBIND, frozen_dtype=torch.bfloat16)
    assert built.llama.layers[0].attention.wq.weight.dtype == torch.bfloat16
    assert built.llama.layers[0].attention.wq.bias.dtype == torch.float32
    assert built.image_bind_proj.weight.dtype == torch.float32  # frozen while fine-tuning, but released: kept exact
    torch.testing.assert_close(built.llama.output.weight.float(), source.llama.output.weight, rtol=1e-2, atol=1e-2)


def test_reading_a_checkpoint_names_the_file_when_missing_or_truncated(tmp_path, source):
    with pytest.raises(FileNotFoundError, match="checkpoint-7.pth"):
        read_adapter_checkpoint(tmp_path / "checkpoint-7.pth")
    whole = save_checkpoint(tmp_path / "whole.pth", source.state_dict_released(), epoch=1)
    assert read_adapter_checkpoint(whole).contents["epoch"] == 1
    data = whole.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth.*incomplete"):
        read_adapter_checkpoint(tmp_path / "cut.pth")


def test_a_file_of_another_kind_is_named_for_what_it_is(tmp_path, source, user_files):
    llama_dir, imagebind_path = user_files
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointFileError, match=r"notes.pth cannot be read as a checkpoint .*not a torch file") as raised:
        read_adapter_checkpoint(text)
    assert "weights_only" not in str(raised.value)  # torch's advice to load untrusted files does not reach users
    with pytest.raises(CheckpointFileError, match=r"is not an adapter checkpoint .*ImageBind's weights .*--imagebind_path"):
        read_adapter_checkpoint(imagebind_path)
    with pytest.raises(CheckpointFileError, match=r"a shard of Meta's LLaMA weights"):
        read_adapter_checkpoint(llama_dir / "7B" / "consolidated.00.pth")
