"""What happens to a bad sample: skip it and count it (the default), or stop at the first one.

A run over millions of web images meets missing files, truncated JPEGs and malformed records.
Under the default policy, `skip`, the dataset returns a `BadSample` marker instead of raising;
the collate function drops it and counts it in the batch's `skipped` dict (reason -> count),
and the engine sums those counts and stops through `check_bad_fraction` once too many were bad.
Under `error`, the dataset raises `BadSampleError` at the first one, naming the meta file,
the row or record and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The reasons a sample is skipped; these strings are the keys of a batch's `skipped` dict.
MISSING_IMAGE = "missing_image"  # the image file does not exist
UNREADABLE_IMAGE = "unreadable_image"  # it exists but PIL cannot open or decode it
MISSING_FIELD = "missing_field"  # a record lacks a required field (or an image path is empty)
NON_STRING_TEXT = "non_string_text"  # a caption, instruction, input, answer or image path is not a string
WRONG_TYPE = "wrong_type"  # a record, its conversation or a turn is not the JSON object or list it must be
EMPTY_TEXT = "empty_text"  # a caption, instruction or question is empty
NO_ANSWER = "no_answer"  # no answer to train on: empty output, conversation without a reply
BAD_CONVERSATION = "bad_conversation"  # turns not alternating human/gpt, or an unknown role
MALFORMED_ROW = "malformed_row"  # a table row with too many fields (dropped while indexing)
# Other modalities' files (data/audio.py, video.py, sensors.py):
MISSING_FILE = "missing_file"  # a sound, video, depth, thermal or IMU file does not exist
UNREADABLE_AUDIO = "unreadable_audio"  # no audio stream could be decoded from it
UNREADABLE_VIDEO = "unreadable_video"  # no video stream could be decoded from it
UNREADABLE_FILE = "unreadable_file"  # a depth, thermal or IMU file that is not what its reader expects
SILENT_AUDIO = "silent_audio"  # every sample is zero: the filterbank would see nothing
TOO_SHORT = "too_short"  # a sound shorter than one 25 ms frame, a video without frames, < 512 points

ON_BAD_SAMPLE_CHOICES = ("skip", "error")


@dataclass
class BadSample:
    """What a dataset returns instead of a sample under `skip`; collate drops it and counts `reason`."""

    reason: str
    where: str


class BadInput(Exception):
    """Raised inside data/ where a sample turns out bad; the dataset turns it into the policy's answer."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadSampleError(ValueError):
    """A bad sample under `on_bad_sample="error"`; the message names the file, the row and the reason."""


class TooManyBadSamplesError(RuntimeError):
    """More than `max_bad_fraction` of the samples seen so far were bad."""


class BadSamplePolicy:
    """Turns a `BadInput` into a `BadSample` marker (skip) or a `BadSampleError` (error).

    Under `skip`, the first `max_logged` bad samples of each process (each DataLoader worker holds
    its own copy of the dataset, so its own count) are logged with where they come from; the rest
    are only counted, by the collate function.
    """

    def __init__(self, on_bad_sample: str = "skip", max_logged: int = 5):
        if on_bad_sample not in ON_BAD_SAMPLE_CHOICES:
            raise ValueError(
                f"on_bad_sample={on_bad_sample!r} is not one of {ON_BAD_SAMPLE_CHOICES}: "
                "'skip' skips and counts bad samples, 'error' stops at the first"
            )
        self.on_bad_sample = on_bad_sample
        self.max_logged = max_logged
        self.logged = 0

    @property
    def raises(self) -> bool:
        return self.on_bad_sample == "error"

    def handle(self, bad: BadInput, where: str) -> BadSample:
        """`where` says which sample, e.g. "/data/cc3m.tsv row 12 (0-based, header not counted)"."""
        if self.raises:
            raise BadSampleError(
                f"{where}: {bad.reason}: {bad.detail} "
                "(fix or remove it, or use --on_bad_sample skip to skip and count bad samples)"
            )
        if self.logged < self.max_logged:
            self.logged += 1
            # Imported here: data.caption_table imports this module, and its command line should not load torch.
            from torch.utils.data import get_worker_info

            worker = get_worker_info()
            process = f"worker {worker.id}" if worker is not None else "main process"
            last = self.logged == self.max_logged
            more = "; further bad samples in this process are counted, not logged" if last else ""
            logger.warning("skipping a bad sample (%s): %s: %s: %s%s", process, where, bad.reason, bad.detail, more)
        return BadSample(reason=bad.reason, where=where)


def check_bad_fraction(skipped: Mapping[str, int], seen: int, max_fraction: float, min_seen: int = 1000) -> None:
    """Raise `TooManyBadSamplesError` when more than `max_fraction` of the `seen` samples were bad.

    `skipped` holds the reason -> count totals of the batches' `skipped` dicts, summed over
    steps and ranks; `seen` counts good and bad samples alike. The
    fraction is judged only once `min_seen` samples were seen, so that one bad image in the first
    batch does not stop a run; call it with `min_seen=0` at the end of an epoch.
    """
    total = sum(skipped.values())
    if seen <= 0 or seen < min_seen or total <= max_fraction * seen:
        return
    by_reason = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items()) if count)
    raise TooManyBadSamplesError(
        f"{total} of {seen} samples were bad ({total / seen:.2%}: {by_reason}), more than "
        f"--max_bad_fraction {max_fraction}; the log names the first ones: fix the meta files or "
        "the image_root in the data config, or raise --max_bad_fraction"
    )
