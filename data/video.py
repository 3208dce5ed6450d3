"""Video files into ImageBind's video input, exactly as the public preprocessing makes it.

    load_video("clip.mp4") -> FloatTensor[15, 3, 2, 224, 224]   (5 clips x 3 crops, 2 frames each)

The steps of the public `load_and_transform_video_data` (pytorchvideo with the decord decoder):
the frames are numbered in decoding order and the video lasts frames / average frame rate; 5
clips of 2 s are placed evenly (data/clip_timing.py) and clip [start, end) holds the frames
ceil(rate x start) up to ceil(rate x end) (at most the last); of these, the first and the last
are kept (2 evenly spaced frames); each clip, as floats / 255, is scaled so that its shorter side
is 224 (bilinear, no corner alignment), normalised with CLIP's statistics, and cut into three 224
x 224 crops along its longer side (start, centre, end). The 15 crops come clip by clip.

Decoding uses PyAV (its own FFmpeg) to RGB, frame by frame, keeping only the frames the clips
use. A missing file, one without a decodable video stream or without frames raises BadInput.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from data.bad_samples import TOO_SHORT, UNREADABLE_VIDEO, BadInput
from data.clip_timing import clip_timepoints
from data.media_files import media_stream
from data.transforms import CLIP_MEAN, CLIP_STD
from model.tokenizer import IMAGE_SIZE

CLIP_SECONDS = 2
CLIPS = 5
FRAMES_PER_CLIP = 2  # the public code keeps as many frames as the clip has seconds
CROPS = 3


def clip_frame_indices(frame_count: int, frame_rate: float) -> list[list[int]]:
    """For each clip, the indices of the frames it keeps (the first and last of its frames)."""
    chosen = []
    for start, end in clip_timepoints(frame_count / frame_rate, CLIP_SECONDS, CLIPS):
        first, stop = math.ceil(frame_rate * start), min(math.ceil(frame_rate * end), frame_count)
        if stop <= first:
            raise ValueError(f"the clip from {float(start):.2f} s to {float(end):.2f} s holds no frame")
        spread = torch.linspace(0, stop - first - 1, FRAMES_PER_CLIP).clamp(0, stop - first - 1).long()
        chosen.append([first + int(offset) for offset in spread])
    return chosen


def decode_frames(path: str | Path) -> tuple[dict[int, torch.Tensor], list[list[int]]]:
    """({frame index: uint8 [H, W, 3]} for the frames the clips keep, the indices per clip)."""
    with media_stream(path, "video", UNREADABLE_VIDEO) as (container, stream):
        frame_rate = float(stream.average_rate or stream.guessed_rate or 0)
        # The frame count as an index of the file's packets gives it (what decord counts).
        frame_count = sum(1 for packet in container.demux(stream) if packet.size)
        if frame_count == 0 or frame_rate <= 0:
            raise BadInput(TOO_SHORT, f"{path}: the video stream holds no frames")
        per_clip = clip_frame_indices(frame_count, frame_rate)
        wanted = {index for indices in per_clip for index in indices}
        container.seek(0, stream=stream)
        frames = {}
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                frames[index] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
            if len(frames) == len(wanted):
                break
    missing = sorted(wanted - frames.keys())
    if missing:
        raise BadInput(UNREADABLE_VIDEO, f"{path}: frames {missing[:3]} could not be decoded")
    return frames, per_clip


def _scale_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """[C, T, H, W] with its shorter side scaled to `size` (the longer one floored), bilinear."""
    height, width = clip.shape[-2:]
    if width < height:
        shape = (int(math.floor(height / width * size)), size)
    else:
        shape = (size, int(math.floor(width / height * size)))
    return F.interpolate(clip, size=shape, mode="bilinear", align_corners=False)


def _three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Start, centre and end crops [C, T, size, size] along the longer side."""
    height, width = clip.shape[-2:]
    crops = []
    for position in range(CROPS):
        top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
        if height > width:
            top = (0, top, height - size)[position]
        else:
            left = (0, left, width - size)[position]
        crops.append(clip[:, :, top:top + size, left:left + size])
    return crops


def video_clips(frames: dict[int, torch.Tensor], per_clip: list[list[int]]) -> torch.Tensor:
    """[15, 3, 2, 224, 224] from the decoded frames the clips keep."""
    mean = torch.tensor(CLIP_MEAN)[:, None, None, None]
    std = torch.tensor(CLIP_STD)[:, None, None, None]
    crops = []
    for indices in per_clip:
        clip = torch.stack([frames[index] for index in indices]).permute(3, 0, 1, 2).float() / 255.0  # [C, T, H, W]
        clip = (_scale_short_side(clip, IMAGE_SIZE) - mean) / std
        crops.extend(_three_crops(clip, IMAGE_SIZE))
    return torch.stack(crops)


def load_video(path: str | Path) -> torch.Tensor:
    """ImageBind's video input [15, 3, 2, 224, 224] for the video file at `path`."""
    return video_clips(*decode_frames(path))
