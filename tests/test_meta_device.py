"""Building on the meta device stays cheap (no torch._dynamo import) and changes no real tensor."""

import subprocess
import sys
import textwrap

import torch
from torch import nn

from model.imagebind.preprocessors import TextPreprocessor
from model.meta_device import on_meta_device
from tests.support import REPO_ROOT

# Every meta build of the project, at the released sizes, in a fresh interpreter.
BUILD_EVERYTHING_ON_META = textwrap.dedent("""
    import sys
    import torch
    from bench.random_model import meta_model
    from model.files.build import meta_llama_keys
    from model.layout import is_finetune_addition

    for phase in ("pretrain", "finetune"):
        model = meta_model(phase, tiny=False, frozen_dtype=torch.bfloat16)
        assert all(t.is_meta for t in model.state_dict().values())
    assert meta_llama_keys(model.llama.args)
    assert is_finetune_addition("llama.layers.3.attention.wq.bias")
    print("torch._dynamo" in sys.modules, "sympy" in sys.modules)
""")


def test_building_the_7b_model_on_meta_imports_neither_dynamo_nor_sympy():
    # torch imports them on the first meta operation that has only a Python reference: 2.5 s of
    # every start on a small machine. A new such operation in a module's __init__ fails here.
    result = subprocess.run([sys.executable, "-c", BUILD_EVERYTHING_ON_META], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_normal_fills_are_skipped_only_on_meta_tensors():
    with on_meta_device():
        embedding = nn.Embedding(50, 8)
        real = torch.zeros(1000, device="cpu")
        nn.init.normal_(real)
        also_real = torch.zeros(1000, device="cpu").normal_(3.0, 0.5)
    assert embedding.weight.is_meta
    assert 0.9 < real.std() < 1.1 and abs(real.mean()) < 0.1
    assert 0.45 < also_real.std() < 0.55 and abs(also_real.mean() - 3.0) < 0.05


def test_text_mask_built_on_meta_then_filled_equals_the_one_built_on_the_cpu():
    on_cpu = TextPreprocessor(vocab_size=10, embed_dim=4, context_length=5)
    assert torch.equal(on_cpu.mask, torch.full((5, 5), float("-inf")).triu(1))
    with on_meta_device():
        on_meta = TextPreprocessor(vocab_size=10, embed_dim=4, context_length=5)
    assert on_meta.mask.is_meta and on_meta.mask.shape == (5, 5)
