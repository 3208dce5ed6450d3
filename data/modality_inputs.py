"""From files to the inputs `ImageBindLLM.generate` takes, for every modality ImageBind reads.

    inputs = read_inputs({"Image": ["girl.jpg", 1], "Audio": ["bgm.wav", 1]}, device="cuda")
    llm.generate(inputs, [model.format_prompt("Guess the girl's mood from the music.")])

The names and the [value, weight] pairs are the published call's. A value is a path (or a text,
for "Text"), or a list of them, one per prompt; a bare value means weight 1. Each modality's
tensor gets a batch axis first:

    Image    any picture Pillow reads          [B, 3, 224, 224]          data/transforms.eval_transform
    Audio    WAV, FLAC, MP3, Ogg, M4A, ...     [B, 3, 1, 128, 204]       data/audio.py
    Video    MP4, WebM, MKV, AVI, ...          [B, 15, 3, 2, 224, 224]   data/video.py
    Depth    disparity .npy or PNG             [B, 1, 224, 224]          data/sensors.py
    Thermal  grayscale image                   [B, 1, 224, 224]          data/sensors.py
    IMU      .npy [6, T]                       [B, 6, 2000]              data/sensors.py
    Point    .pt .npy .ply .pcd .xyz .obj      [B, N, 3]                 data/point_clouds.py
    Text     the text itself                   [B, 77]                   data/text_tokens.py

The model fuses the modalities given: each embedding normalised, weighted by weight / (sum of
the weights), summed (model/adapter.py, as the published code). A file that cannot be read raises
BadInput naming it and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from data.audio import load_audio
from data.images import load_image
from data.point_clouds import load_point_cloud
from data.sensors import load_depth, load_imu, load_thermal
from data.text_tokens import clip_token_ids
from data.transforms import eval_transform
from data.video import load_video


def _image(path: str | Path) -> torch.Tensor:
    return load_image(Path(path), eval_transform())


READERS: dict[str, Callable[[Any], torch.Tensor]] = {
    "Image": _image, "Audio": load_audio, "Video": load_video, "Depth": load_depth,
    "Thermal": load_thermal, "IMU": load_imu, "Text": lambda text: clip_token_ids(str(text))[0],
    "Point": load_point_cloud,
}


def read_modality(name: str, source: str | Path) -> torch.Tensor:
    """One sample of modality `name` (a key of READERS) from a path, or a text for "Text"."""
    if name not in READERS:
        raise ValueError(f"unknown modality {name!r}: the names are {', '.join(READERS)}")
    return READERS[name](source)


def _value_and_weight(entry: Any) -> tuple[Any, float]:
    """A [value, weight] pair as the published call writes it, or a bare value (weight 1)."""
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], (int, float)) \
            and not isinstance(entry[1], bool):
        return entry[0], float(entry[1])
    return entry, 1.0


def read_inputs(sources: Mapping[str, Any], device: torch.device | str = "cpu") -> dict[str, list]:
    """{name: [tensor with a batch axis, weight]} from {name: [path or paths, weight]} (see above)."""
    inputs = {}
    for name, entry in sources.items():
        value, weight = _value_and_weight(entry)
        values: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError(f"{name}: no file given")
        samples = [read_modality(name, item) for item in values]
        if len({tuple(sample.shape) for sample in samples}) > 1:
            raise ValueError(f"{name}: the files give different shapes {[tuple(s.shape) for s in samples]}; "
                             "give one at a time (point clouds batched together need the same number of points)")
        batch = torch.stack(samples)
        inputs[name] = [batch.to(device), weight]
    return inputs
