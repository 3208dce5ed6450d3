"""Where ImageBind's audio and video clips lie in a file: evenly spread clips of a fixed length.

The public preprocessing cuts every sound into 3 clips of 2 s and every video into 5 clips of
2 s with pytorchvideo's constant-clips sampler, at the commit ImageBind's requirements pin
(6cdc929): clip k of n starts at k x (duration - length) / (n - 1), so the first clip starts the
file and the last ends it; a file shorter than a clip gives n clips that all start at 0 and run
past its end. (pytorchvideo's PyPI release 0.1.5 divides by n instead, and rejects an argument
ImageBind's video path passes.) The times are exact fractions, as there, so that the sample and
frame indices computed from them are the same to the last one: in float64 a 5.3 s sound's second
clip would start at sample 26400, not 26399, and its filterbank would change by up to 0.59.
"""

from __future__ import annotations

from fractions import Fraction


def clip_timepoints(duration: float, clip_seconds: int, clips: int) -> list[tuple[Fraction, Fraction]]:
    """(start, end) in seconds of each of `clips` clips of `clip_seconds` in `duration` seconds."""
    if clips < 1:
        raise ValueError(f"clips={clips}: give at least one")
    latest_start = Fraction(max(duration - clip_seconds, 0))
    step = latest_start / max(clips - 1, 1)
    return [(step * index, step * index + clip_seconds) for index in range(clips)]
