"""Comparing the arguments a checkpoint was written with to those of the run that resumes it.

`--resume auto` must not quietly continue a run whose model, phase or data changed. Which argument
names are harmless to change (log frequency, workers, folders) is the engine's decision; this file
finds the differences, sorts them into blocking and harmless, and words them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


class _Absent:
    """Stands for an argument one side does not have (a flag added or removed between versions)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class ArgChange:
    name: str
    saved: Any
    new: Any

    def __str__(self) -> str:
        return f"--{self.name}: {self.saved!r} -> {self.new!r}"


def _as_dict(args: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    return dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)


def _comparable(value: Any) -> Any:
    # A path saved as pathlib.Path and passed again as a string is the same argument.
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def compare_args(
    saved: Mapping[str, Any] | argparse.Namespace,
    new: Mapping[str, Any] | argparse.Namespace,
    harmless: Iterable[str],
) -> tuple[list[ArgChange], list[ArgChange]]:
    """(blocking, harmless) differences between two argument sets, each sorted by name.

    An argument present on one side only is a difference too (shown as `<absent>`); it blocks
    unless its name is in `harmless`.
    """
    saved, new, harmless = _as_dict(saved), _as_dict(new), set(harmless)
    blocking, allowed = [], []
    for name in sorted(saved.keys() | new.keys()):
        old_value, new_value = saved.get(name, ABSENT), new.get(name, ABSENT)
        if _comparable(old_value) == _comparable(new_value):
            continue
        change = ArgChange(name, old_value, new_value)
        (allowed if name in harmless else blocking).append(change)
    return blocking, allowed


def format_arg_changes(blocking: list[ArgChange], harmless: list[ArgChange], source: str | os.PathLike) -> str:
    """A message listing both kinds of difference against the run that wrote `source`."""
    lines = [f"arguments differ from those {os.fspath(source)} was written with (saved -> now):"]
    if blocking:
        lines.append("  changes that make it a different run:")
        lines += [f"    {change}" for change in blocking]
    if harmless:
        lines.append("  harmless changes:")
        lines += [f"    {change}" for change in harmless]
    return "\n".join(lines)
