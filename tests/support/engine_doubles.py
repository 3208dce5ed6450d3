"""Stand-ins for the model and the data side, so the engine's parts are tested without either.

`ToyModel` keeps ImageBindLLM's training contract (`model(tokens, labels, images, has_image)` ->
mean cross-entropy over answer tokens, `trainable_parameters()`, `state_dict_released()`) with a
frozen embedding and two small trainable layers. `ListSampler` is a resumable batch sampler over
fixed batches. `make_trainer` builds the engine's Trainer around a ToyModel. The tests at the end
check the stand-ins keep those contracts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.optimizer import build_optimizer
from engine.parallel import wrap_for_training
from engine.precision import grad_scaler
from engine.train_loop import LoopSettings, Trainer
from util.distributed import DistributedContext

VOCAB = 16


class ToyModel(nn.Module):
    """A frozen token embedding, a trainable image projection and a trainable output layer."""

    def __init__(self, vocab: int = VOCAB, dim: int = 8, seed: int = 0, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout  # drawn from the global generator, which a checkpoint must restore
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab, dim)
            self.image_proj = nn.Linear(3, dim)
            self.output = nn.Linear(dim, vocab)
        self.embed.requires_grad_(False)
        self.nan_at_call: int | None = None  # make the loss NaN at this forward call (0-based)
        self.calls = 0

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: param for name, param in self.named_parameters() if param.requires_grad}

    def state_dict_released(self) -> dict[str, torch.Tensor]:
        return {name: param.detach() for name, param in self.trainable_parameters().items()}

    def forward(self, tokens, labels, images, has_image=None):
        call, self.calls = self.calls, self.calls + 1
        hidden = self.embed(tokens) + self.image_proj(images.mean(dim=(2, 3)))[:, None, :]
        hidden = F.dropout(hidden, self.dropout, self.training)
        logits = self.output(hidden)[:, :-1]
        targets = labels[:, 1:]
        is_answer = targets != 0
        loss = F.cross_entropy(logits[is_answer], targets[is_answer])
        if call == self.nan_at_call:
            loss = loss * float("nan")
        return loss


def toy_batch(seed: int, batch_size: int = 2, length: int = 6, skipped: dict | None = None) -> dict:
    """A collated batch in the engine's format: prompt tokens without loss, then answer tokens."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (batch_size, length), generator=generator)
    labels = tokens.clone()
    labels[:, : length // 2] = 0  # the first half is the prompt
    return {
        "tokens": tokens,
        "labels": labels,
        "images": torch.randn(batch_size, 3, 4, 4, generator=generator),
        "has_image": torch.ones(batch_size, dtype=torch.bool),
        "skipped": dict(skipped or {}),
    }


def empty_batch(skipped: dict | None = None) -> dict:
    """What collate returns when every sample of a batch was bad."""
    batch = toy_batch(0, batch_size=0)
    batch["skipped"] = dict(skipped or {"missing_image": 2})
    return batch


class ListSampler:
    """A resumable batch sampler over `epochs[e]`, a list of index batches per epoch (the protocol of
    engine/data_source.py, with the data sampler's resume semantics)."""

    def __init__(self, batches_per_epoch: list[list[list[int]]]):
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches_per_epoch[self.epoch])

    @property
    def start_batch(self) -> int:
        return self._resume[1] if self._resume and self._resume[0] == self.epoch else 0

    def __iter__(self):
        return iter(self.batches_per_epoch[self.epoch][self.start_batch:])

    def state_dict(self, batches_done: int) -> dict:
        if batches_done == len(self):
            return {"epoch": self.epoch + 1, "batches_done": 0}
        return {"epoch": self.epoch, "batches_done": batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self._resume = (state["epoch"], state["batches_done"])


class BatchDataset(torch.utils.data.Dataset):
    """Index i -> the precomputed batch i (used with a collate that unwraps one-element lists)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


def unwrap_single(items: list[dict]) -> dict:
    """A collate function for BatchDataset: each sampler batch names one precomputed batch."""
    (batch,) = items
    return batch


def make_trainer(model: ToyModel, *, accum_iter: int = 1, epochs: int = 2, lr: float = 0.05, warmup: float = 0.0,
                 print_freq: int = 100, context: DistributedContext | None = None, check=None,
                 step_loss_path=None) -> Trainer:
    """The engine's Trainer around `model`: AdamW without weight decay, fp32 on the CPU."""
    context = context or DistributedContext()
    named = list(model.trainable_parameters().items())
    params = [param for _, param in named]
    module = wrap_for_training(model, params, context)
    optimizer = build_optimizer(named, lr, 0.0, torch.device("cpu"))
    settings = LoopSettings(epochs=epochs, accum_iter=accum_iter, lr=lr, min_lr=0.0, warmup_epochs=warmup,
                            clip_grad=None, print_freq=print_freq, precision="fp32", step_loss_path=step_loss_path)
    return Trainer(module, params, optimizer, grad_scaler(torch.device("cpu"), "fp32"), settings, context,
                   check or (lambda *args, **kwargs: None))


# -- the stand-ins keep the contracts ----------------------------------------------------------------


def run_epoch(trainer: Trainer, batches, batches_in_epoch: int, start, after_step=None) -> dict | None:
    """Drive Trainer.train_epoch as the run does: `after_step(position)` after every step but the
    last (True: stop there, returning None), then the epoch's stats."""
    for position in trainer.train_epoch(batches, batches_in_epoch, start):
        if after_step is not None and after_step(position):
            return None
    return trainer.finish_epoch()
