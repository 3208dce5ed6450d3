"""Samples per second per CPU core of the training datasets, on JPEGs this script makes.

    python -m bench.loader [--images 32] [--repeats 5] [--public /work/scratch/loader_public]

It writes `--images` photo-like JPEGs (quality 90, sizes spread from 500x375 to 2000x1500, every
fourth one upright; the same files every time), a caption table and a LLaVA-style JSON list
naming them, and a tiny tokenizer, then builds PretrainDataset and FinetuneDataset as a training
run does (train_transform, set_epoch) and times passes of `dataset[i]` over every image: a sample's
text, decode and crop, what a DataLoader worker does. The process is pinned to one core with one
torch thread.

`--public DIR` times the published datasets side by side: DIR holds the published
imagebind_LLM/data/dataset.py and the parts of its llama package that it imports (see the README),
kept outside the project. Passes alternate between ours and the published one; each figure is the
number of images over the median pass. One JSON line: samples_per_s per phase, and with --public
public_samples_per_s and speedup.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):  # run as a file, bench/loader.py: import the project from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from data.config import load_data_config  # noqa: E402
from data.dataset import FinetuneDataset, PretrainDataset  # noqa: E402
from data.transforms import train_transform  # noqa: E402
from model.tokenizer import CAPTION_INSTRUCTION, Tokenizer, format_prompt, train_tokenizer  # noqa: E402

PHASES = {"pretrain": (PretrainDataset, 96), "finetune": (FinetuneDataset, 512)}  # the published --max_words
CAPTIONS = ["a red bicycle leaning on a wall", "two dogs playing in the snow", "a bowl of fruit on a table"]
QUESTION = "What is in the picture?"


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def image_sizes(count: int, smallest: tuple[int, int], largest: tuple[int, int]) -> list[tuple[int, int]]:
    """Evenly spread from smallest to largest (landscape); every fourth one turned upright."""
    sizes = []
    for i in range(count):
        fraction = i / max(count - 1, 1)
        width = round(smallest[0] + fraction * (largest[0] - smallest[0]))
        height = round(smallest[1] + fraction * (largest[1] - smallest[1]))
        sizes.append((height, width) if i % 4 == 3 else (width, height))
    return sizes


def photo_like(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Smooth random shapes (random colours on a 16-pixel grid, bicubically enlarged) plus mild
    sensor noise: at quality 90 about 3 bits a pixel, as photos are; flat colour would decode
    unrealistically fast."""
    width, height = size
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    noisy = smooth + rng.normal(0.0, 8.0, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def make_data(folder: Path, count: int, smallest: tuple[int, int], largest: tuple[int, int]) -> dict[str, Path]:
    """The images, both meta files, their YAML configs and a tokenizer, under `folder`."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate(image_sizes(count, smallest, largest)):
        path = images / f"{i:04d}.jpg"
        photo_like(size, rng).save(path, quality=90)
        paths.append(path.resolve())
    rows = ["url\tcaption"] + [f"{path}\t{CAPTIONS[i % len(CAPTIONS)]}" for i, path in enumerate(paths)]
    (folder / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    records = [{"id": str(i), "image": str(path), "conversations": [
        {"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": CAPTIONS[i % len(CAPTIONS)]}]}
        for i, path in enumerate(paths)]
    (folder / "llava.json").write_text(json.dumps(records), encoding="utf-8")
    files = {"tokenizer": folder / "tokenizer.model"}
    for phase, meta in (("pretrain", "captions.tsv"), ("finetune", "llava.json")):
        files[phase] = folder / f"{phase}.yaml"
        files[phase].write_text(f"META:\n  - {(folder / meta).resolve()}\n", encoding="utf-8")
    train_tokenizer([format_prompt(CAPTION_INSTRUCTION), format_prompt(QUESTION)] + CAPTIONS * 10,
                    files["tokenizer"], vocab_size=320)
    return files


def our_dataset(phase: str, files: dict[str, Path]):
    dataset_class, max_words = PHASES[phase]
    dataset = dataset_class(load_data_config(files[phase]), Tokenizer(files["tokenizer"]), train_transform(),
                            max_words=max_words, on_bad_sample="error", seed=0)
    dataset.set_epoch(0)  # as a training run does: each sample draws from its own generators
    return dataset


def public_dataset(phase: str, files: dict[str, Path], public_dir: Path):
    """The published dataset class with its own transform, imported from public_dir."""
    if str(public_dir) not in sys.path:
        sys.path.insert(0, str(public_dir))  # for its `import llama`
    spec = importlib.util.spec_from_file_location("published_dataset", public_dir / "data" / "dataset.py")
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(sys.stderr):  # it prints its config; stdout is for the JSON line
        spec.loader.exec_module(module)
        dataset_class = {"pretrain": module.PretrainDataset, "finetune": module.FinetuneDataset}[phase]
        return dataset_class(str(files[phase]), transform=module.transform_train, max_words=PHASES[phase][1],
                             tokenizer_path=str(files["tokenizer"]))


def one_pass(dataset) -> Callable[[], float]:
    def timed() -> float:
        started = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        return time.perf_counter() - started
    return timed


def time_loaders(args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """Seconds per pass of each (loader, phase), passes interleaved."""
    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_loader_")))
        files = make_data(folder, args.images, args.smallest, args.largest)
        loaders = {}
        for phase in args.phases:
            loaders[("ours", phase)] = one_pass(our_dataset(phase, files))
            if args.public is not None:
                loaders[("public", phase)] = one_pass(public_dataset(phase, files, args.public.resolve()))
        for timed in loaders.values():
            timed()  # warm-up: the page cache, lazy imports
        seconds = {key: [] for key in loaders}
        for _ in range(args.repeats):
            for key, timed in loaders.items():  # interleaved: a busy moment slows every loader alike
                seconds[key].append(timed())
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32, help="how many JPEGs (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over them per loader (default 5)")
    parser.add_argument("--smallest", type=parse_size, default=(500, 375), help="WxH (default 500x375)")
    parser.add_argument("--largest", type=parse_size, default=(2000, 1500), help="WxH (default 2000x1500)")
    parser.add_argument("--phases", nargs="+", choices=sorted(PHASES), default=["pretrain", "finetune"])
    parser.add_argument("--public", type=Path, default=None,
                        help="a folder with the published imagebind_LLM data/dataset.py and llama/, timed alongside")
    parser.add_argument("--folder", type=Path, default=None, help="where the images go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be at least 1")
    if args.public is not None and not (args.public / "data" / "dataset.py").is_file():
        parser.error(f"--public {args.public}: no data/dataset.py there (the README says how to make the folder)")
    cores, threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, {min(cores)})  # per core: one core, one torch thread
    torch.set_num_threads(1)
    try:
        seconds = time_loaders(args)
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
    rate = {key: args.images / statistics.median(times) for key, times in seconds.items()}
    result = {
        "bench": "loader",
        "samples_per_s": {phase: round(rate["ours", phase], 2) for phase in args.phases},
        "images": args.images,
        "sizes": [list(args.smallest), list(args.largest)],
        "jpeg_quality": 90,
        "repeats": args.repeats,
        "threads": 1,
        "cores": 1,
        "torch": torch.__version__.split("+")[0],
        "pillow": PIL.__version__,
    }
    if args.public is not None:
        result["public_samples_per_s"] = {phase: round(rate["public", phase], 2) for phase in args.phases}
        result["speedup"] = {phase: round(rate["ours", phase] / rate["public", phase], 3) for phase in args.phases}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
