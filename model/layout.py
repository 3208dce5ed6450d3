"""Which of ImageBind-LLM's tensors each phase trains, and which a released checkpoint holds.

Names here are fixed by the published checkpoints (tests/contracts/): the bridge modules sit at
the top level of the model, `prefix_query` beside them, the frozen encoder under `image_bind.` and
LLaMA under `llama.`. Every rule matches an exact module name or a module type, never a
substring of a name, so a tensor added later is frozen and unsaved until a rule names it.

    pre-training trains   the bridge, prefix_query, every attention gate
    fine-tuning trains    LLaMA's norms, LLaMA's biases, the LoRA factors
    a released file holds both sets (so 7B-pretrained.pth carries the frozen norms, 7B.pth the
                          frozen bridge): everything the LLaMA and ImageBind files do not hold,
                          plus LLaMA's norms
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable, Iterable, Iterator

from torch import Tensor, nn

from model.llama import GatedPrefixAttention, LoRADown, LoRAUp, ModelArgs, RMSNorm, Transformer
from model.meta_device import on_meta_device

PHASES = ("pretrain", "finetune")


def check_phase(phase: str) -> str:
    """`phase` if it is one of PHASES; a ValueError naming them otherwise."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}: use one of {', '.join(PHASES)}")
    return phase

BRIDGE_BLOCKS = 3
BRIDGE_MODULES = ("image_bind_proj",) + tuple(
    f"image_bind_{part}_{block}" for block in range(1, BRIDGE_BLOCKS + 1) for part in ("norm", "f1", "f2", "f3")
)
PREFIX_MODULE = "prefix_query"
LLAMA_MODULE = "llama"
# Released-layout keys of LLaMA's tensors start with this; older released files spell it "llma.".
PREFIX, LEGACY_PREFIX = "llama.", "llma."

# (module's name inside the model, the module, the parameter's own name) -> bool
ParameterRule = Callable[[str, nn.Module, str], bool]


def is_pretrain_trainable(module_name: str, module: nn.Module, param_name: str) -> bool:
    """The bridge, prefix_query and the attention gates."""
    if module_name in BRIDGE_MODULES or module_name == PREFIX_MODULE:
        return True
    return isinstance(module, GatedPrefixAttention) and param_name == "gate"


def is_finetune_trainable(module_name: str, module: nn.Module, param_name: str) -> bool:
    """Inside LLaMA: every RMSNorm, every nn.Linear bias (Meta's LLaMA has none), every LoRA factor."""
    if not module_name.startswith(LLAMA_MODULE + "."):  # a path test: the module lies under model.llama
        return False
    if isinstance(module, (RMSNorm, LoRADown, LoRAUp)):
        return True
    return isinstance(module, nn.Linear) and param_name == "bias"


def is_released(module_name: str, module: nn.Module, param_name: str) -> bool:
    """A released checkpoint holds what either phase trains (see the module docstring)."""
    return is_pretrain_trainable(module_name, module, param_name) or is_finetune_trainable(module_name, module, param_name)


TRAINABLE_RULES: dict[str, ParameterRule] = {"pretrain": is_pretrain_trainable, "finetune": is_finetune_trainable}


def named_parameters_where(model: nn.Module, rule: ParameterRule) -> Iterator[tuple[str, nn.Parameter]]:
    """(full name, parameter) for every parameter of `model` that `rule` accepts, in module order."""
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if rule(module_name, module, param_name):
                yield (f"{module_name}.{param_name}" if module_name else param_name), param


def trainable_parameters(model: nn.Module, phase: str) -> dict[str, nn.Parameter]:
    """The parameters `phase` trains (whatever their requires_grad says now)."""
    return dict(named_parameters_where(model, TRAINABLE_RULES[check_phase(phase)]))


def released_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The released layout: name -> detached tensor (shared with the model, not copied)."""
    return {name: param.detach() for name, param in named_parameters_where(model, is_released)}


# -- the phase a file's keys say -------------------------------------------------------------------

@functools.cache  # built once, on first use
def _finetune_key_suffixes() -> frozenset[str]:
    """The names after 'layers.N.' that only fine-tuning adds to LLaMA (biases, LoRA factors): the same
    for every layer and every model size, so a one-layer model on the meta device tells them."""
    args = ModelArgs(dim=8, n_layers=1, n_heads=2, vocab_size=1, multiple_of=1)
    with on_meta_device():
        plain = set(Transformer(args).state_dict())
        tuned = set(Transformer(replace(args, w_bias=True, w_lora=True)).state_dict())
    return frozenset(key.split(".", 2)[2] for key in tuned - plain)


def is_finetune_addition(key: str) -> bool:
    """Whether a released-layout key ('llama.' or 'llma.') is one of LLaMA's biases or LoRA factors."""
    parts = key.split(".", 3)  # 'llama', 'layers', N, rest
    return (len(parts) == 4 and parts[0] + "." in (PREFIX, LEGACY_PREFIX) and parts[1] == "layers"
            and parts[3] in _finetune_key_suffixes())


def phase_of_keys(keys: Iterable[str]) -> str:
    """'finetune' when released-layout keys hold LLaMA biases or LoRA factors, else 'pretrain'."""
    return "finetune" if any(is_finetune_addition(key) for key in keys) else "pretrain"
