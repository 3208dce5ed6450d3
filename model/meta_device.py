"""Building modules on the meta device: shapes and names only, no memory, no random numbers.

Models are built on the meta device and then filled from files (files/build.py), and the key lists
of a shape are read from meta modules (layout.py, files/). On the meta device the initialisers have
no values to fill; yet on the meta device many operations go through Python references that import
torch._dynamo and sympy on first use: 2.5 s of every training start, generation and dry run on a
2-core machine, for nothing. The project's modules compute their buffers (rotary tables, the text
mask) only off the meta device; torch's own initialisers cannot be told so, and all but one of them
avoid those references: the normal fill (nn.Embedding's default, ImageBind's position embeddings).
`on_meta_device()` skips the normal fills of meta tensors and nothing else: every other
operation, and every tensor on a real device, is untouched.

Code that builds modules on the meta device uses it instead of `torch.device("meta")`; a test
(tests/test_meta_device.py) builds the 7B model with it in a fresh interpreter and checks that
torch._dynamo stays unimported, so a new meta-unfriendly operation is found there.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# The two ways a normal fill reaches a tensor: the initialiser, and the tensor method it calls.
_NORMAL_FILLS = (nn.init.normal_, Tensor.normal_)


class _SkipNormalFillOnMeta(TorchFunctionMode):
    """Returns a meta tensor unchanged from a normal fill; passes every other call through."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _NORMAL_FILLS:
            tensor = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(tensor, Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


@contextmanager
def on_meta_device() -> Iterator[None]:
    """`with torch.device("meta")`, less the normal fills, which have no values to fill."""
    with _SkipNormalFillOnMeta(), torch.device("meta"):
        yield
