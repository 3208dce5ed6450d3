"""The fast paths compute what the plain path computes (float32, CPU, no compilation).

- the loss: the vocabulary head on the answer rows only (labels on the host) and the masked loss
  over every position give the same loss and gradients, also without any answer;
- ImageBind: a batch whose rows all have an image runs the encoder once, on the whole batch;
- activation checkpointing changes no number: the same loss and gradients in both phases, and
  the same optimizer step through the engine's Trainer, whose batches keep labels and has_image
  on the host;
- RMSNorm's output in the input's dtype is what the linear layers reading it under autocast see;
- prepare_for_training keeps only ImageBind's vision branch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.data_source import batch_to_device
from engine.model_setup import SpeedSettings, prepare_for_training
from engine.train_loop import Position
from model.adapter import answer_loss, gathered_answer_loss, masked_answer_loss
from model.llama import RMSNorm
from support.tiny_models import random_images, random_tokens, tiny_model
from support.engine_doubles import make_trainer, run_epoch

SEQ = 12
VOCAB = 64


def labelled_batch(seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and labels: a prompt without loss, then answers; the last row has no answer at all."""
    tokens = random_tokens(batch, SEQ, VOCAB, seed)
    labels = tokens.clone()
    labels[:, :5] = 0
    labels[-1] = 0
    return tokens, labels


def trainable_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.grad.clone() for name, param in model.trainable_parameters().items()}


# -- the loss --------------------------------------------------------------------------------------

@pytest.mark.parametrize("no_answer_at_all", [False, True])
def test_gathered_and_masked_losses_agree_with_their_gradients(no_answer_at_all):
    gen = torch.Generator().manual_seed(0)
    head = nn.Linear(16, VOCAB, bias=False)
    hidden = torch.randn(3, SEQ, 16, generator=gen, requires_grad=True)
    _, labels = labelled_batch(1)
    if no_answer_at_all:
        labels.zero_()
    results = {}
    for loss_fn in (gathered_answer_loss, masked_answer_loss):
        loss = loss_fn(hidden, labels, head)
        hidden_grad, head_grad = torch.autograd.grad(loss, (hidden, head.weight))
        results[loss_fn.__name__] = (loss, hidden_grad, head_grad)
    (gathered, *gathered_grads), (masked, *masked_grads) = results.values()
    if no_answer_at_all:
        assert gathered.item() == 0.0 and masked.item() == 0.0
    torch.testing.assert_close(gathered, masked, rtol=1e-6, atol=1e-7)
    for got, expected in zip(gathered_grads, masked_grads):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert masked_grads[0][:, -1].abs().sum() == 0  # the last position predicts nothing


def test_labels_on_the_host_choose_the_answer_rows_there_for_a_model_on_another_device():
    # Meta tensors stand for a GPU: the gathered path moves only its indices and targets there; the
    # masked path would mix devices and fail.
    head = nn.Linear(16, VOCAB, bias=False, device="meta")
    hidden = torch.empty(3, SEQ, 16, device="meta")
    _, labels = labelled_batch(2)
    loss = answer_loss(hidden, labels, head)
    assert loss.device.type == "meta" and loss.shape == ()
    with pytest.raises((RuntimeError, NotImplementedError, ValueError)):
        masked_answer_loss(hidden, labels, head)


# -- ImageBind's rows ------------------------------------------------------------------------------

def test_a_batch_whose_rows_all_have_an_image_runs_the_encoder_once_on_all_of_them():
    model = tiny_model("pretrain").eval()
    images = random_images(3)
    batch_sizes = []
    model.image_bind.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0]["vision"].shape[0]))
    with torch.no_grad():
        embeddings = model.image_embeddings(images, torch.tensor([True, True, True]))
        expected = model.encode("vision", images)
    assert batch_sizes == [3, 3]  # no zero image, no row selection
    assert torch.equal(embeddings, expected)


# -- activation checkpointing ----------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(phase):
    tokens, labels = labelled_batch(3)
    images, has_image = random_images(3), torch.tensor([True, False, True])
    results = []
    for checkpointing in (False, True):
        model = tiny_model(phase).train()
        model.llama.activation_checkpointing = checkpointing
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = model(tokens, labels, images, has_image)
        loss.backward()
        results.append((loss, trainable_grads(model), sum(saved)))
    (plain, plain_grads, plain_saved), (recomputed, recomputed_grads, recomputed_saved) = results
    assert torch.equal(plain, recomputed)
    assert plain_grads.keys() == recomputed_grads.keys()
    assert all(torch.equal(plain_grads[name], recomputed_grads[name]) for name in plain_grads)
    assert recomputed_saved < plain_saved / 2  # the layers keep their inputs only


def test_an_optimizer_step_through_the_trainer_is_the_same_with_activation_checkpointing():
    tokens, labels = labelled_batch(4)
    batch = {"tokens": tokens, "labels": labels, "images": random_images(3),
             "has_image": torch.tensor([True, False, True]), "skipped": {}}
    moved = batch_to_device(batch, torch.device("cpu"))
    assert moved[1] is batch["labels"] and moved[3] is batch["has_image"]  # host masks stay where they are
    after = []
    for checkpointing in (False, True):
        model = tiny_model("finetune")
        prepare_for_training(model, SpeedSettings(activation_checkpointing=checkpointing))
        run_epoch(make_trainer(model, epochs=1), [batch], 1, Position(0, 0, 0))
        after.append({name: param.detach().clone() for name, param in model.trainable_parameters().items()})
    assert all(torch.equal(after[0][name], after[1][name]) for name in after[0])
    assert not torch.equal(after[0]["llama.norm.weight"], tiny_model("finetune").llama.norm.weight)  # it stepped


# -- RMSNorm and the model's set-up for training ----------------------------------------------------

def test_rmsnorm_rounds_to_the_input_dtype_what_autocast_would_round_for_the_next_linear():
    gen = torch.Generator().manual_seed(5)
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=gen))  # a trained float32 weight
    x = torch.randn(2, 5, 16, generator=gen).bfloat16()
    linear = nn.Linear(16, 8, bias=False)
    x32 = x.float()
    float32_product = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.eps)).bfloat16() * norm.weight
    assert float32_product.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        normed = norm(x)
        assert normed.dtype == torch.bfloat16
        assert torch.equal(linear(normed), linear(float32_product))
    x32_norm = norm(x32)
    assert x32_norm.dtype == torch.float32
    torch.testing.assert_close(x32_norm, x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight,
                               rtol=0, atol=0)


def test_prepare_for_training_keeps_only_the_vision_branch_and_changes_no_saved_tensor():
    model = tiny_model("pretrain")
    released_before = model.state_dict_released()
    trainable_before = model.trainable_parameters()
    prepare_for_training(model, SpeedSettings(activation_checkpointing=True))
    assert model.image_bind.modalities == ["vision"]
    assert {key.split(".")[1] for key in model.image_bind.state_dict()} == {"vision"}
    assert model.llama.activation_checkpointing
    assert model.state_dict_released().keys() == released_before.keys()
    assert model.trainable_parameters().keys() == trainable_before.keys()
    tokens, labels = labelled_batch(6)
    loss = model(tokens, labels, random_images(3), torch.tensor([True, False, True]))
    assert torch.isfinite(loss)
