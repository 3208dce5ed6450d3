"""--compile (engine/model_setup.py) on the CPU: which graphs it makes, and the numbers they give.

The second test compiles with inductor, which needs a C++ compiler (the CI image has one): two
graphs of a tiny model, about 30 s with a cold cache. To cover what either phase trains with
one compilation, the fine-tuning model there also trains the pre-training tensors (gates, bridge,
prefix), so that gradients flow through every path of the block.
"""

from __future__ import annotations

import torch

from engine.model_setup import compile_blocks
from support.tiny_models import random_images, random_tokens, tiny_model

VOCAB = 64


def batch(seq: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    tokens = random_tokens(2, seq, VOCAB, seed)
    labels = tokens.clone()
    labels[:, : seq // 2] = 0
    return tokens, labels, random_images(2, seed), torch.tensor([True, True])


def test_one_graph_serves_every_layer_after_the_first_and_no_block_breaks():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    model = tiny_model("pretrain", n_layers=3).train()
    compile_blocks(model, pad_to_multiple=8, backend=counting_backend)  # fullgraph: a break would raise
    model(*batch(16)).backward()
    # ImageBind's blocks share one; LLaMA's layer 0 (its input needs no gradient) one, layers 1-2 one.
    assert len(graphs) == 3
    model(*batch(24, seed=1)).backward()
    assert len(graphs) == 5  # a new length: LLaMA's two again, ImageBind's unchanged
    model(*batch(16, seed=2)).backward()
    assert len(graphs) == 5  # lengths seen before reuse their graphs


def test_compiled_blocks_give_the_plain_loss_and_gradients_also_with_activation_checkpointing():
    def every_added_tensor_trainable(model):
        for name in ("prefix_query.weight", "image_bind_proj.weight", "image_bind_f1_1.weight"):
            model.get_parameter(name).requires_grad_(True)
        for layer in model.llama.layers:
            layer.attention.gate.requires_grad_(True)
        return [param for param in model.parameters() if param.requires_grad]

    plain, fast = tiny_model("finetune").train(), tiny_model("finetune").train()
    plain_params, fast_params = every_added_tensor_trainable(plain), every_added_tensor_trainable(fast)
    compile_blocks(fast, pad_to_multiple=8)
    inputs = batch(16)
    plain_loss = plain(*inputs)
    plain_grads = torch.autograd.grad(plain_loss, plain_params)
    for checkpointing in (False, True):
        fast.llama.activation_checkpointing = checkpointing
        fast_loss = fast(*inputs)
        fast_grads = torch.autograd.grad(fast_loss, fast_params)
        torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-6, atol=1e-6)
        assert len(fast_grads) == len(plain_grads) > 20
        for got, expected in zip(fast_grads, plain_grads):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
