"""util.run_args: which saved arguments differ from a resuming run's, and how that reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from util.run_args import ABSENT, ArgChange, compare_args, format_arg_changes

HARMLESS = {"num_workers", "output_dir", "print_freq", "resume"}


def test_differences_split_into_blocking_and_harmless():
    saved = {"llama_type": "7B", "lr": 1e-3, "num_workers": 8, "output_dir": "out", "removed_flag": True,
             "data_config": "a.yaml"}
    new = {"llama_type": "13B", "lr": 1e-3, "num_workers": 4, "output_dir": "out", "added_flag": 1,
           "data_config": "b.yaml", "resume": "auto"}
    blocking, harmless = compare_args(saved, new, HARMLESS)
    assert blocking == [
        ArgChange("added_flag", ABSENT, 1),
        ArgChange("data_config", "a.yaml", "b.yaml"),
        ArgChange("llama_type", "7B", "13B"),
        ArgChange("removed_flag", True, ABSENT),
    ]
    assert harmless == [ArgChange("num_workers", 8, 4), ArgChange("resume", ABSENT, "auto")]


def test_identical_arguments_and_paths_given_as_strings_do_not_differ():
    saved = argparse.Namespace(output_dir=Path("/runs/a"), epochs=4, lr=None)
    new = {"output_dir": "/runs/a", "epochs": 4, "lr": None}
    assert compare_args(saved, new, HARMLESS) == ([], [])


def test_message_lists_every_difference_under_its_kind():
    blocking, harmless = compare_args({"llama_type": "7B", "num_workers": 8}, {"llama_type": "13B", "num_workers": 2},
                                      HARMLESS)
    message = format_arg_changes(blocking, harmless, Path("/runs/a/checkpoint-last.pth"))
    assert message.splitlines() == [
        "arguments differ from those /runs/a/checkpoint-last.pth was written with (saved -> now):",
        "  changes that make it a different run:",
        "    --llama_type: '7B' -> '13B'",
        "  harmless changes:",
        "    --num_workers: 8 -> 2",
    ]
    only_new = format_arg_changes([ArgChange("seed", ABSENT, 1)], [], "c.pth")
    assert "--seed: <absent> -> 1" in only_new and "harmless" not in only_new
