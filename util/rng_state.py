"""Capture and restore every random generator a training step draws from.

A run resumed mid-epoch gives the same losses as an uninterrupted one only if dropout, data
augmentation and shuffling draw the same numbers, so the checkpoint carries these states.

The captured state holds only tensors, ints, floats, strings, lists and tuples, so that a checkpoint
holding it loads with `torch.load(..., weights_only=True)` (numpy's own state holds an ndarray,
which that loader refuses).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _numpy_state() -> dict[str, Any]:
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "algorithm": algorithm,
        "keys": keys.tolist(),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = np.asarray(state["keys"], dtype=np.uint32)
    np.random.set_state((state["algorithm"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]))


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's `random`, numpy's global generator, torch's CPU generator and, when
    this process has started CUDA, the current GPU's generator.

    CUDA is not started here just to read it: doing so from every rank would create a context on
    each GPU it can see.
    """
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put the generators back as `capture_rng_state` found them."""
    version, internal, gauss_next = state["python"]
    # weights_only loading may turn the tuple into a list; random.setstate wants a tuple.
    random.setstate((version, tuple(internal), gauss_next))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
        else:
            logger.warning("the checkpoint holds a CUDA generator state but this run has no GPU; it is not restored")
