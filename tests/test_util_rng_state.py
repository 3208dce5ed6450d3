"""util.rng_state: a captured state, saved and loaded like a checkpoint, reproduces the same draws."""

from __future__ import annotations

import random

import numpy as np
import torch

from util.rng_state import capture_rng_state, restore_rng_state


def _draws() -> tuple:
    # np.random.normal twice exercises numpy's cached second Gaussian.
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.normal(),
            torch.rand(4).tolist(), torch.randn(2).tolist(), torch.randint(0, 1000, (3,)).tolist())


def test_restored_state_reproduces_the_draws_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leave numpy holding a cached Gaussian, part of the state
    torch.save({"rng": capture_rng_state()}, tmp_path / "state.pth")
    expected = _draws()

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert _draws() != expected  # the generators really moved elsewhere

    restore_rng_state(torch.load(tmp_path / "state.pth", weights_only=True)["rng"])
    assert _draws() == expected


def test_capture_does_not_advance_the_generators():
    torch.manual_seed(0)
    random.seed(0)
    capture_rng_state()
    first = (torch.rand(1).item(), random.random())
    torch.manual_seed(0)
    random.seed(0)
    assert (torch.rand(1).item(), random.random()) == first
