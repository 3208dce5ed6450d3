"""Peak GPU memory of a training step, estimated on the CPU in seconds: no GPU, no weights.

    python -m bench.memory_estimate --phase finetune --batch_size 4 --activation_checkpointing

The model is built at its real shape (bench/random_model.py's 7B and ImageBind-Huge, or --tiny)
on fake tensors (torch's FakeTensorMode: shapes and dtypes, no data, no arithmetic), prepared as
a training run prepares it, and two optimizer steps run on a batch of --seq_len tokens per
sample (the second step with AdamW's state in place). A dispatch mode adds up the bytes of every
storage the step creates, for as long as it lives. The estimate of the peak allocated memory is
the parameters and buffers plus the most those storages ever held at once.

Counted: the frozen and trainable tensors in their training dtypes, gradients, AdamW's state,
what autograd keeps for backward (all of each layer, or with --activation_checkpointing only its
input, plus one layer's again during backward), temporaries. Not modelled: the CUDA caching
allocator's rounding and fragmentation (they make reserved exceed allocated), library workspaces,
CUDA autocast's op lists (CPU autocast stands in: both run linear layers in bf16), compilation
(inductor chooses what to keep on its own), and two choices made upper bounds: the encoder runs
on every row, and the loss covers every position (masked_answer_loss; training computes the
vocabulary head on the answer rows only).
"""

from __future__ import annotations

import argparse
import json
import sys
import weakref
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

if __package__ in (None, ""):  # run as a file, bench/memory_estimate.py: import the project from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.random_model import meta_model  # noqa: E402
from bench.throughput import GIB, LEARNING_RATE, WEIGHT_DECAY  # noqa: E402
from bench.workload import WORKLOADS  # noqa: E402
from engine.model_setup import SpeedSettings, prepare_for_training  # noqa: E402
from engine.optimizer import build_optimizer  # noqa: E402
from model.adapter import masked_answer_loss  # noqa: E402
from model.layout import PHASES  # noqa: E402
from model.tokenizer import IMAGE_SIZE  # noqa: E402

STEPS = 2


class LiveStorageBytes(TorchDispatchMode):
    """Adds up the bytes of the storages that ops create, while they live, and the peak of that sum.

    Storages that exist before (`known`: parameters, inputs) and views of them count nothing.
    """

    def __init__(self, known: Iterable[torch.Tensor]):
        super().__init__()
        self.live = self.peak = 0
        self._known = {tensor.untyped_storage()._cdata: tensor for tensor in known}
        self._tracked: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._known or key in self._tracked:
            return
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        self._tracked[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._tracked.pop(key, None)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def estimate_peak_memory(phase: str, batch_size: int, seq_len: int, activation_checkpointing: bool,
                         tiny: bool = False) -> dict:
    """The estimate (see the module docstring), in GiB: static, the step's peak above it, and their sum."""
    model = meta_model(phase, tiny, torch.bfloat16)  # built on meta first: construction reads a few numbers back
    vocab_size = model.llama.args.vocab_size
    static = tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        prepare_for_training(model, SpeedSettings(activation_checkpointing=activation_checkpointing))
        model.train()
        optimizer = build_optimizer(list(model.trainable_parameters().items()), LEARNING_RATE, WEIGHT_DECAY,
                                        torch.device("cpu"))
        tokens = torch.randint(3, vocab_size, (batch_size, seq_len))
        images = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
        counter = LiveStorageBytes([*model.parameters(), *model.buffers(), tokens, images])
        with counter:
            for _ in range(STEPS):
                with model.precision("cpu"):
                    loss = masked_answer_loss(model.hidden_states(tokens, images), tokens, model.llama.output)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                del loss
    return {"phase": phase, "batch_size": batch_size, "seq_len": seq_len,
            "activation_checkpointing": activation_checkpointing, "tiny": tiny,
            "static_gib": static / GIB, "step_peak_gib": counter.peak / GIB,
            "estimated_peak_allocated_gib": (static + counter.peak) / GIB}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", required=True, choices=PHASES)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=None,
                        help="tokens per sample, padding included; default the workload's longest (96 / 512)")
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="the benchmark's tiny configuration")
    args = parser.parse_args(argv)
    seq_len = args.seq_len or WORKLOADS[args.phase].max_tokens
    if args.batch_size < 1 or seq_len < 2:
        parser.error("--batch_size must be at least 1 and --seq_len at least 2")
    result = estimate_peak_memory(args.phase, args.batch_size, seq_len, args.activation_checkpointing, args.tiny)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
