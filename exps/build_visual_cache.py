"""Build a visual cache (model/visual_cache.py) from your own images: ImageBind's embedding of each.

    python -m exps.build_visual_cache IMAGES OUTPUT.pt --imagebind_path ckpts/imagebind_huge.pth
        [--imagebind_config tiny.yaml] [--batch_size 64] [--device cuda] [--save_every 20]

IMAGES is a folder (its .jpg, .jpeg, .png, .webp and .bmp files, recursively, in sorted order) or a
text file with one image path per line. Each image goes through ImageBind's own transform and
its frozen vision encoder, in batches; the unit-norm embeddings and the paths are written to
OUTPUT.pt, which `model.load(..., visual_cache=OUTPUT.pt)` and the notebook take.

Progress and the time left are logged as it goes. Every --save_every batches the work so far is
saved atomically to OUTPUT.pt.partial; run the same command again after a kill and it goes on from
there (the image list must start with the images already done). An image that cannot be read
is skipped, named in the log and counted in the file.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from data.bad_samples import BadInput
from data.images import load_image
from data.transforms import eval_transform
from engine.flags import read_imagebind_config
from model.files.build import copy_state_dict, read_imagebind_state_dict
from model.imagebind.model import IMAGEBIND_HUGE_ARGS, ImageBindModel, ModalityType
from model.meta_device import on_meta_device
from model.visual_cache import CACHE_FORMAT
from util.checkpoint import atomic_save
from util.log import init_logger

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def list_images(source: Path) -> list[Path]:
    """The images of a folder (recursively, sorted) or of a list file (one path per line, in order)."""
    if source.is_dir():
        return sorted(path for path in source.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        return [Path(line) if Path(line).is_absolute() else source.parent / line for line in lines if line]
    raise FileNotFoundError(f"{source} is neither a folder of images nor a list of image paths")


def vision_encoder(imagebind_path: Path, imagebind_args: dict | None, device: torch.device) -> ImageBindModel:
    """ImageBind's vision branch alone, with the file's weights, in eval mode."""
    with on_meta_device():
        encoder = ImageBindModel(**(imagebind_args or IMAGEBIND_HUGE_ARGS)).keep_modalities([ModalityType.VISION])
    encoder.to_empty(device=device)
    copy_state_dict(encoder, read_imagebind_state_dict(imagebind_path), f"ImageBind {imagebind_path}").forbid_missing()
    return encoder.eval()


def _resume(partial: Path, images: list[Path]) -> dict:
    if not partial.is_file():
        return {"paths": [], "embeddings": [], "skipped": []}
    state = torch.load(partial, map_location="cpu", weights_only=True)
    done = state["paths"] + state["skipped"]
    if set(done) != {str(path) for path in images[:len(done)]}:
        raise ValueError(f"{partial} was written for another list of images: remove it to start afresh")
    logger.info("resuming from %s: %d images done", partial, len(done))
    return {"paths": state["paths"], "embeddings": list(state["embeddings"].split(1)) if state["paths"] else [],
            "skipped": state["skipped"]}


def _saved(state: dict) -> dict:
    embeddings = torch.cat(state["embeddings"]) if state["embeddings"] else torch.zeros(0)
    return {"format": CACHE_FORMAT, "paths": state["paths"], "embeddings": embeddings, "skipped": state["skipped"]}


def build_cache(images: list[Path], output: Path, encoder: ImageBindModel, device: torch.device,
                batch_size: int = 64, save_every: int = 20) -> dict:
    """Embed `images` into OUTPUT (see the module docstring); returns what was written."""
    partial = output.with_name(output.name + ".partial")
    state = _resume(partial, images)
    start = len(state["paths"]) + len(state["skipped"])
    transform = eval_transform()
    started, batches = time.perf_counter(), 0
    for first in range(start, len(images), batch_size):
        pixels, names = [], []
        for path in images[first:first + batch_size]:
            try:
                pixels.append(load_image(path, transform))
                names.append(str(path))
            except BadInput as bad:
                logger.warning("skipped %s", bad)
                state["skipped"].append(str(path))
        if pixels:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                embedded = encoder({ModalityType.VISION: torch.stack(pixels).to(device)})[ModalityType.VISION]
            state["embeddings"].append(F.normalize(embedded.float(), dim=-1).cpu())
            state["paths"].extend(names)
        batches += 1
        done = min(first + batch_size, len(images))
        rate = (done - start) / (time.perf_counter() - started)
        logger.info("embedded %d/%d images (%.1f/s), about %.0f s left", done, len(images), rate,
                    (len(images) - done) / rate if rate else 0)
        if batches % save_every == 0:
            atomic_save(_saved(state), partial)
    result = _saved(state)
    atomic_save(result, output)
    partial.unlink(missing_ok=True)
    logger.info("wrote %s: %d embeddings, %d images skipped", output, len(result["paths"]), len(result["skipped"]))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="a folder of images, or a text file listing image paths")
    parser.add_argument("output", type=Path, help="the cache file to write (.pt)")
    parser.add_argument("--imagebind_path", type=Path, required=True, help="ImageBind's weights (imagebind_huge.pth)")
    parser.add_argument("--imagebind_config", type=Path, default=None,
                        help="YAML of ImageBindModel arguments for another size (default: ImageBind-Huge)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save_every", type=int, default=20, help="batches between saves of the work so far")
    args = parser.parse_args(argv)
    init_logger(0)
    images = list_images(args.images)
    if not images:
        parser.error(f"no images found in {args.images}")
    device = torch.device(args.device)
    encoder = vision_encoder(args.imagebind_path, read_imagebind_config(args.imagebind_config), device)
    build_cache(images, args.output, encoder, device, args.batch_size, args.save_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
