"""Depth maps, thermal images and IMU recordings into ImageBind's inputs, by this project's conventions.

The public ImageBind code has no reader for these three (its encoders take ready-made tensors),
so these conventions are ours, chosen to give each encoder the shape it was built for:

- depth: a disparity map (larger = nearer) as a `.npy` array [H, W] of floats, or a 16-bit or
  8-bit grayscale PNG; scaled to [0, 1] (PNG: by its type's full scale, 65535 or 255; `.npy`: by
  its own maximum), shorter side to 224 (bilinear), centre crop -> [1, 224, 224];
- thermal: a grayscale image in any format Pillow reads (colour is converted to luminance),
  scaled to [0, 1], shorter side to 224 (bicubic, as RGB images), centre crop -> [1, 224, 224];
- IMU: a `.npy` array [6, T] (accelerometer x, y, z then gyroscope x, y, z, as Ego4D records
  them; ImageBind was trained on 10 s at 200 Hz): the first 2000 samples, zero-padded at the
  end when shorter -> [6, 2000].
No mean or standard deviation is applied: the public code states none for these encoders.
A missing file, one that does not decode, has the wrong shape or holds NaN raises BadInput.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data.bad_samples import MISSING_FILE, UNREADABLE_FILE, BadInput
from model.tokenizer import IMAGE_SIZE

IMU_CHANNELS, IMU_SAMPLES = 6, 2000


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadInput(MISSING_FILE, f"{path} does not exist")
    return path


def _resize_and_crop(plane: torch.Tensor, mode: str) -> torch.Tensor:
    """[H, W] -> [1, 224, 224]: shorter side to 224, centre crop (as ImageBind's image transform)."""
    height, width = plane.shape
    scale = IMAGE_SIZE / min(height, width)
    size = (max(IMAGE_SIZE, round(height * scale)), max(IMAGE_SIZE, round(width * scale)))
    resized = F.interpolate(plane[None, None], size=size, mode=mode, align_corners=False)[0]
    top, left = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    return resized[:, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE].contiguous()


def _finite(array: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(array).all():
        raise BadInput(UNREADABLE_FILE, f"{path}: holds NaN or infinite values")
    return array


def load_depth(path: str | Path) -> torch.Tensor:
    """ImageBind's depth input [1, 224, 224] from a disparity map (see the module docstring)."""
    path = _existing(path)
    try:
        if path.suffix.lower() == ".npy":
            array = _finite(np.load(path, allow_pickle=False).astype(np.float32), path)
            if array.ndim != 2:
                raise BadInput(UNREADABLE_FILE, f"{path}: a depth .npy must be [H, W], got shape {array.shape}")
            array = array / array.max() if array.max() > 0 else array
        else:
            with Image.open(path) as image:
                full_scale = 65535.0 if image.mode in ("I;16", "I;16B", "I;16L", "I") else 255.0
                array = np.asarray(image if full_scale > 255 else image.convert("L"), dtype=np.float32) / full_scale
    except BadInput:
        raise
    except Exception as error:
        raise BadInput(UNREADABLE_FILE, f"{path}: {type(error).__name__}: {error}") from error
    return _resize_and_crop(torch.from_numpy(np.ascontiguousarray(array)), "bilinear")


def load_thermal(path: str | Path) -> torch.Tensor:
    """ImageBind's thermal input [1, 224, 224] from a grayscale image (see the module docstring)."""
    path = _existing(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except Exception as error:
        raise BadInput(UNREADABLE_FILE, f"{path}: {type(error).__name__}: {error}") from error
    return _resize_and_crop(torch.from_numpy(array), "bicubic").clamp(0.0, 1.0)


def load_imu(path: str | Path) -> torch.Tensor:
    """ImageBind's IMU input [6, 2000] from a `.npy` array [6, T] (see the module docstring)."""
    path = _existing(path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:
        raise BadInput(UNREADABLE_FILE, f"{path}: {type(error).__name__}: {error}") from error
    if array.ndim != 2 or array.shape[0] != IMU_CHANNELS or array.shape[1] == 0:
        raise BadInput(UNREADABLE_FILE, f"{path}: an IMU .npy must be [6, T] with T >= 1, got shape {array.shape}")
    signal = torch.from_numpy(_finite(array.astype(np.float32), path))[:, :IMU_SAMPLES]
    return F.pad(signal, (0, IMU_SAMPLES - signal.shape[1]))
