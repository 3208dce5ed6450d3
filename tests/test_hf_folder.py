"""Hugging Face LLaMA folders: loaded as they are and after `from-hf`, equal to transformers' logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from model.convert import main as convert_main
from model.files.hf_folder import HFLlamaState
from model.files.llama_folder import choose_llama_type, llama_model_dir, load_tokenizer, read_params
from model.files.meta_folder import read_meta_params
from model.files.build import build_from_files
from support.hf_folders import save_hf_folder, tiny_hf_model, transformer_from_folder
from support.tiny_models import TINY_IMAGEBIND, all_logits, random_images, random_tokens, tiny_model

VOCAB = 61
SEQ = 12


def hf_logits(hf, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(tokens).logits


def our_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens)


@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
@pytest.mark.parametrize("n_kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
def test_hf_folder_loads_directly_and_after_conversion_with_transformers_logits(tmp_path, file_format, n_kv_heads):
    hf = tiny_hf_model(n_kv_heads, VOCAB)
    folder = save_hf_folder(hf, tmp_path / "hf", file_format)
    suffix = ".safetensors" if file_format == "safetensors" else ".bin"
    assert len(list(folder.glob(f"*{suffix}"))) > 2 and len(list(folder.glob(f"*{suffix}.index.json"))) == 1
    tokens = random_tokens(3, SEQ, VOCAB)
    expected = hf_logits(hf, tokens)
    assert expected.abs().max() > 1  # not a comparison of near-zero numbers

    direct = transformer_from_folder(folder)
    assert direct.args.kv_heads == n_kv_heads
    torch.testing.assert_close(our_logits(direct, tokens), expected, rtol=1e-5, atol=1e-5)

    assert convert_main(["from-hf", str(folder), str(tmp_path / "llama" / "converted")]) == 0
    converted = transformer_from_folder(tmp_path / "llama" / "converted")
    assert read_meta_params(tmp_path / "llama" / "converted") == read_params(folder)
    for key, tensor in direct.state_dict().items():  # the conversion moves tensors, it computes nothing
        assert torch.equal(converted.state_dict()[key], tensor), key
    torch.testing.assert_close(our_logits(converted, tokens), expected, rtol=1e-5, atol=1e-5)


def test_conversion_keeps_the_stored_dtype_unless_told(tmp_path):
    hf = tiny_hf_model(2, VOCAB).to(torch.bfloat16)
    folder = save_hf_folder(hf, tmp_path / "hf")
    assert convert_main(["from-hf", str(folder), str(tmp_path / "as_stored")]) == 0
    assert convert_main(["from-hf", str(folder), str(tmp_path / "fp32"), "--dtype", "float32"]) == 0
    as_stored = torch.load(tmp_path / "as_stored" / "consolidated.00.pth")
    fp32 = torch.load(tmp_path / "fp32" / "consolidated.00.pth")
    assert {tensor.dtype for tensor in as_stored.values()} == {torch.bfloat16}
    assert all(torch.equal(fp32[key], tensor.float()) for key, tensor in as_stored.items())
    assert list(as_stored)[:3] == ["tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.attention.wk.weight"]
    assert list(as_stored)[-2:] == ["norm.weight", "output.weight"]  # Meta's order, whatever the shards'


def test_rows_read_without_the_tensor_equal_the_tensors_rows(tmp_path):
    state = HFLlamaState(save_hf_folder(tiny_hf_model(2, VOCAB), tmp_path / "hf"))
    for key in state:
        tensor = state[key]
        index = [0, tensor.shape[0] // 2, tensor.shape[0] - 1]
        assert state.shape(key) == tensor.shape
        assert torch.equal(state.rows(key, index), tensor[index]), key


def test_tied_embeddings_use_the_embedding_as_output(tmp_path):
    hf = tiny_hf_model(2, VOCAB, tie_word_embeddings=True)
    folder = save_hf_folder(hf, tmp_path / "hf")
    model = transformer_from_folder(folder)
    assert torch.equal(model.output.weight, model.tok_embeddings.weight)
    tokens = random_tokens(2, SEQ, VOCAB)
    torch.testing.assert_close(our_logits(model, tokens), hf_logits(hf, tokens), rtol=1e-5, atol=1e-5)


def test_build_from_files_takes_an_hf_folder_and_its_own_tokenizer(tmp_path, tokenizer, tokenizer_path):
    llama_dir = tmp_path / "llama"  # no LLAMA_DIR/tokenizer.model: the folder's own is used
    hf = tiny_hf_model(2, tokenizer.n_words)
    save_hf_folder(hf, llama_dir / "llama2_hf", tokenizer_path=tokenizer_path)
    imagebind_path = tmp_path / "imagebind_tiny.pth"
    torch.save(tiny_model("pretrain", tokenizer=tokenizer).image_bind.state_dict(), imagebind_path)

    assert choose_llama_type(llama_dir) == "llama2_hf"
    built = build_from_files(llama_dir, None, imagebind_path, "pretrain", TINY_IMAGEBIND).eval()
    assert built.llama.args.kv_heads == 2
    tokens = random_tokens(2, SEQ, tokenizer.n_words)
    with torch.no_grad():  # zero gates at the start of pre-training: LLaMA's own logits
        logits = all_logits(built, tokens, random_images(2))
    torch.testing.assert_close(logits, hf_logits(hf, tokens), rtol=1e-5, atol=1e-5)


def test_a_missing_model_folder_lists_what_llama_dir_holds(tmp_path):
    save_hf_folder(tiny_hf_model(2, VOCAB), tmp_path / "llama2_hf")
    with pytest.raises(FileNotFoundError, match=r"7B_chinese.*holds llama2_hf"):
        llama_model_dir(tmp_path, "7B_chinese")


@pytest.mark.parametrize("config, reason", [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope type 'linear'"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"model_type": "mistral"}, "model_type='mistral'"),
])
def test_configs_we_cannot_compute_are_refused_naming_the_file(tmp_path, config, reason):
    folder = save_hf_folder(tiny_hf_model(2, VOCAB), tmp_path / "hf")
    values = json.loads((folder / "config.json").read_text())
    if "rope_scaling" in config:
        values.pop("rope_parameters", None)  # where transformers 5 writes it; older configs say rope_scaling
    (folder / "config.json").write_text(json.dumps({**values, **config}))
    with pytest.raises(ValueError, match=f"config.json.*{reason}"):
        HFLlamaState(folder)
    assert convert_main(["from-hf", str(folder), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_that_is_not_sentencepiece_is_a_clear_error(tmp_path, tokenizer_path):
    folder = save_hf_folder(tiny_hf_model(2, VOCAB), tmp_path / "llama" / "hf")
    (folder / "tokenizer.json").write_text("{}")
    both_places_and_why = r"neither .*llama/tokenizer\.model nor .*hf/tokenizer\.model.*only tokenizer\.json"
    with pytest.raises(FileNotFoundError, match=both_places_and_why):
        load_tokenizer(tmp_path / "llama", folder)
    (folder / "tokenizer.model").write_text("not a SentencePiece model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_tokenizer(tmp_path / "llama", folder)
    shutil.copy(tokenizer_path, tmp_path / "llama" / "tokenizer.model")  # LLAMA_DIR's comes first
    assert load_tokenizer(tmp_path / "llama", folder).model_path == tmp_path / "llama" / "tokenizer.model"
