"""At the 7B shape, built on the meta device, tensor names and shapes equal the files users have."""

from __future__ import annotations

import json

import pytest
import torch

from model.adapter import ImageBindLLM
from model.imagebind.model import IMAGEBIND_HUGE_ARGS
from model.llama import ModelArgs, Transformer
from support import CONTRACTS_DIR

# Meta's params.json for LLaMA-7B, verbatim (vocab_size -1: the tokenizer's 32000 words)
PARAMS_7B = {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06, "vocab_size": -1}


def contract(name: str) -> dict[str, list[int]]:
    return json.loads((CONTRACTS_DIR / name).read_text())["shapes"]


def shapes(tensors: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(tensor.shape) for key, tensor in tensors.items()}


@pytest.fixture(scope="module", params=["pretrain", "finetune"])
def model_7b(request) -> ImageBindLLM:
    with torch.device("meta"):
        return ImageBindLLM(ModelArgs.from_params(PARAMS_7B, vocab_size=32000), request.param)


def test_llama_7b_equals_metas_file():
    with torch.device("meta"):
        llama = Transformer(ModelArgs.from_params(PARAMS_7B, vocab_size=32000))
    assert shapes(llama.state_dict()) == contract("llama_7b_meta.json")


def test_released_layout_equals_the_published_files(model_7b):
    published = {"pretrain": "imagebind_llm_7b_pretrained.json", "finetune": "imagebind_llm_7b_finetuned.json"}
    assert shapes(model_7b.state_dict_released()) == contract(published[model_7b.phase])


def test_trainable_tensors_equal_the_contract(model_7b):
    expected = json.loads((CONTRACTS_DIR / "imagebind_llm_7b_trainable.json").read_text())[model_7b.phase]
    assert sorted(model_7b.trainable_parameters()) == sorted(expected)
    assert sorted(name for name, p in model_7b.named_parameters() if p.requires_grad) == sorted(expected)


def test_every_tensor_comes_from_exactly_one_file(model_7b):
    """LLaMA's file, ImageBind's file, or the released checkpoint (the norms are in two: LLaMA's and ours)."""
    llama_keys = {"llama." + k for k in contract("llama_7b_meta.json")}
    imagebind_keys = {"image_bind." + k for k in contract("imagebind_huge.json")}
    released = set(model_7b.state_dict_released())
    assert set(model_7b.state_dict()) == llama_keys | imagebind_keys | released
    assert not imagebind_keys & (llama_keys | released)
    assert llama_keys & released == {k for k in llama_keys if k.endswith("norm.weight")}


def test_the_3d_branch_adds_exactly_the_tensors_of_the_3d_imagebind_file():
    with torch.device("meta"):
        model = ImageBindLLM(ModelArgs.from_params(PARAMS_7B, vocab_size=32000), "finetune",
                             {**IMAGEBIND_HUGE_ARGS, "point_branch": True})
    encoder = shapes(model.image_bind.state_dict())
    plain = contract("imagebind_huge.json")
    assert {key: shape for key, shape in encoder.items() if key not in plain} == contract("imagebind_huge_point_extra.json")
    assert {key: shape for key, shape in encoder.items() if key in plain} == plain
    assert shapes(model.state_dict_released()) == contract("imagebind_llm_7b_finetuned.json")  # the adapter is unchanged
