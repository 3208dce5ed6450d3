"""The training image: torchvision's RandomResizedCrop, read from the file at the scale it needs.

The published training transform decodes the whole JPEG, crops 90-100% of it and shrinks the crop
to 224 x 224 with PIL's bicubic filter; on photos of 0.2 to 3 megapixels that decode and that
resize are nearly all of a sample's cost. `TrainCrop` draws the same crop box (torchvision's
algorithm, from a generator passed in), then

1. decodes a JPEG at 1/2, 1/4 or 1/8 of its size when the crop allows it (libjpeg scales the DCT
   while decoding, through PIL's `Image.draft`). The rule: the largest of those scales at which
   the crop's shorter side still has at least 224 pixels, so the final resize never enlarges what
   the reduced decode made. Other formats, and crops too small for it, decode at full size;
2. resizes the crop, mapped to the decoded grid (its corners rounded to whole decoded pixels), to
   224 x 224 with torch's antialiased bicubic on uint8 (PIL's filter, a = -0.5, 4-5x faster);
3. normalises with CLIP's mean and std in one multiply-subtract.

The pixels differ from the published transform's by a few 0-255 steps (README, "Speed and
memory" says how much and why that does not matter); `eval_transform` is not touched.
Images are converted to RGB as before (greyscale, palette, CMYK, alpha) and EXIF orientation is
ignored, as `Image.open(...).convert("RGB")` ignores it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from data.images import opened_image
from data.transforms import CLIP_MEAN, CLIP_STD
from model.tokenizer import IMAGE_SIZE

# (x / 255 - mean) / std as one multiply and one subtraction on the uint8 values.
_SCALE = torch.tensor([1 / (255 * std) for std in CLIP_STD]).view(3, 1, 1)
_SHIFT = torch.tensor([mean / std for mean, std in zip(CLIP_MEAN, CLIP_STD)]).view(3, 1, 1)

# The reductions libjpeg decodes at, largest first.
_JPEG_REDUCTIONS = (8, 4, 2)


@dataclass(frozen=True)
class CropBox:
    """A crop in the pixels of the original image, as RandomResizedCrop.get_params returns it."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class TrainCrop:
    """A random crop of `scale` of the area with aspect ratio in `ratio`, resized to `size` x `size`.

    The published values: 90-100% of the area, ratio (0.75, 1.3333) (not exactly 4/3), bicubic.
    """

    size: int = IMAGE_SIZE
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (0.75, 1.3333)

    def read(self, path: Path, generator: torch.Generator | None = None) -> torch.Tensor:
        """FloatTensor[3, size, size]: a random crop of the image file at `path`, normalised.

        The box is drawn from `generator` (None: torch's global generator). A missing or
        undecodable file raises BadInput."""
        with opened_image(path) as image:
            box = self.draw_box(*image.size, generator)
            reduction = self.reduction(box) if image.format in ("JPEG", "MPO") else 1
            pixels, reduction = _decode_rgb(image, reduction)
        return self._resize(pixels, box, reduction)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """The same for an image already opened (decoded at full size)."""
        box = self.draw_box(*image.size, generator)
        pixels, reduction = _decode_rgb(image, 1)
        return self._resize(pixels, box, reduction)

    def draw_box(self, width: int, height: int, generator: torch.Generator | None = None) -> CropBox:
        """torchvision's RandomResizedCrop.get_params, drawing from `generator`: for the same
        generator state, the same box (tests/test_data_train_crop.py compares them)."""
        area = height * width
        log_low, log_high = _log_ratio(self.ratio)
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(self.scale[0], self.scale[1], generator=generator).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_low, log_high, generator=generator)).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
                left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
                return CropBox(top, left, h, w)
        # Fall back to a central crop, as torchvision does.
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return CropBox((height - h) // 2, (width - w) // 2, h, w)

    def reduction(self, box: CropBox) -> int:
        """The largest JPEG reduction (8, 4, 2, else 1) that leaves the crop's shorter side at
        least `size` pixels: the decode may shrink the image, the resize never enlarges it back."""
        for reduction in _JPEG_REDUCTIONS:
            if min(box.height, box.width) >= self.size * reduction:
                return reduction
        return 1

    def _resize(self, pixels: torch.Tensor, box: CropBox, reduction: int) -> torch.Tensor:
        """The box of the original image, mapped to `pixels` (decoded at 1/reduction), resized and
        normalised."""
        height, width = pixels.shape[:2]
        top, left = round(box.top / reduction), round(box.left / reduction)
        bottom = min(max(round((box.top + box.height) / reduction), top + 1), height)
        right = min(max(round((box.left + box.width) / reduction), left + 1), width)
        crop = pixels[top:bottom, left:right].permute(2, 0, 1).unsqueeze(0)  # [1, 3, h, w], channels last
        resized = F.interpolate(crop, size=(self.size, self.size), mode="bicubic", antialias=True,
                                align_corners=False)
        return resized[0].to(torch.float32, memory_format=torch.contiguous_format).mul_(_SCALE).sub_(_SHIFT)


@functools.cache
def _log_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    """log of the ratio bounds in float32, as torchvision computes them (the same draws need the
    same bounds)."""
    low, high = torch.log(torch.tensor(ratio)).tolist()
    return low, high


def _decode_rgb(image: Image.Image, reduction: int) -> tuple[torch.Tensor, int]:
    """uint8[H, W, 3] of the image, decoded at 1/reduction of its size where the file allows it
    (an image already loaded or a progressive scan may not), and the reduction it was decoded at."""
    if reduction > 1:
        width, height = image.size
        drafted = image.draft("RGB", (width // reduction, height // reduction))
        reduction = 1 if drafted is None else round(width / drafted[1][2])
    image.load()  # decodes: truncated or corrupt data fails here
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # Copied out of PIL's memory as packed RGB (the file closes after this); a writable buffer,
    # which torch wants (np.asarray of a PIL image is read-only and twice as slow).
    width, height = rgb.size
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(height, width, 3)
    return pixels, reduction
