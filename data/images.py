"""Load one image file for training; a missing or undecodable file raises `BadInput`, not a crash."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image

from data.bad_samples import MISSING_IMAGE, MISSING_FIELD, UNREADABLE_IMAGE, BadInput


def resolve_image_path(name: str, image_root: Path) -> Path:
    """An absolute path as written; a relative one under image_root."""
    if not name.strip():
        raise BadInput(MISSING_FIELD, "the image path is empty")
    path = Path(name)
    return path if path.is_absolute() else image_root / path


@contextlib.contextmanager
def opened_image(path: Path) -> Iterator[Image.Image]:
    """The image file at `path`, opened (not yet decoded) and closed afterwards. A missing file,
    or an error while the body reads it, raises BadInput: keep the body to reading the image."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError as error:
        raise BadInput(MISSING_IMAGE, f"{path} does not exist") from error
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise BadInput(UNREADABLE_IMAGE, f"{path}: {type(error).__name__}: {error}") from error


def load_image(path: Path, transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """The transformed RGB image at `path`."""
    with opened_image(path) as image:
        rgb = image.convert("RGB")  # decodes the whole file: truncated data fails here
    return transform(rgb)
