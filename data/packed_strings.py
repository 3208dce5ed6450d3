"""Millions of strings in one UTF-8 byte buffer plus an offset array, with no Python object per string.

A list of 10 million Python strings costs several GB, and every forked DataLoader worker slowly
copies it: touching an object writes its reference count, which un-shares its memory page. Two
numpy arrays cost the text's bytes plus 8 bytes a string, and stay shared between workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PackedStrings:
    """Read-only sequence of strings: string i is buffer[offsets[i]:offsets[i + 1]] decoded as UTF-8."""

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray):
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(buffer):
            raise ValueError("offsets must start at 0 and end at the buffer's length")
        self.buffer = buffer
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.buffer[start:end].tobytes().decode("utf-8")

    def byte_lengths(self) -> np.ndarray:
        """The UTF-8 length of every string, as int64[len(self)]."""
        return np.diff(self.offsets)


class PackedStringsBuilder:
    """Appends strings chunk by chunk; `build()` hands the arrays over without copying the text."""

    def __init__(self) -> None:
        # bytearray grows in place (realloc), so the text is held once, not twice, while it grows.
        self._buffer = bytearray()
        self._ends: list[np.ndarray] = []

    def extend(self, strings: Sequence[str]) -> None:
        if len(strings) == 0:
            return
        # One join and one encode for the whole chunk, then the NUL separators give the lengths:
        # far faster than encoding string by string. A string holding a NUL itself takes the slow way.
        joined = np.frombuffer("\x00".join(strings).encode("utf-8"), dtype=np.uint8)
        separators = np.flatnonzero(joined == 0)
        if len(separators) == len(strings) - 1:
            bounds = np.concatenate(([-1], separators, [len(joined)]))
            lengths = np.diff(bounds) - 1
            text = joined[joined != 0]
        else:
            encoded = [string.encode("utf-8") for string in strings]
            lengths = np.array([len(item) for item in encoded], dtype=np.int64)
            text = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends.append(len(self._buffer) + np.cumsum(lengths, dtype=np.int64))
        self._buffer += memoryview(text)  # appended through the buffer protocol, no intermediate copy

    def build(self) -> PackedStrings:
        offsets = np.concatenate([np.zeros(1, dtype=np.int64), *self._ends])
        buffer = np.frombuffer(self._buffer, dtype=np.uint8)
        self._buffer, self._ends = bytearray(), []
        return PackedStrings(buffer, offsets)
