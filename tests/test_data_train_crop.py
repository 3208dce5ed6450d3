"""data/train_crop.py: the published random crop's boxes and pixels, read at reduced size, and a
sample's image as a pure function of (seed, epoch, index) for both datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from data.bad_samples import BadInput
from data.config import DataConfig, MetaSource
from data.dataset import FinetuneDataset, PretrainDataset
from data.train_crop import CropBox, TrainCrop
from data.transforms import CLIP_MEAN, CLIP_STD, train_transform
from support.data_files import write_json, write_table

PUBLISHED = dict(scale=(0.9, 1.0), ratio=(0.75, 1.3333))


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth shapes and gradients, as photos mostly are."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8))
    return coarse.resize(size, Image.BICUBIC)


def published_crop(image: Image.Image, box: CropBox) -> torch.Tensor:
    """What the published transform makes of `box`: PIL crop, bicubic resize, ToTensor, Normalize."""
    resized = TF.resized_crop(image, box.top, box.left, box.height, box.width, [224, 224], InterpolationMode.BICUBIC)
    return TF.normalize(TF.to_tensor(resized), CLIP_MEAN, CLIP_STD)


def in_255_steps(normalised: torch.Tensor) -> torch.Tensor:
    return normalised * torch.tensor(CLIP_STD).view(3, 1, 1) * 255


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", [(2000, 1500), (500, 375), (375, 500), (224, 224), (100, 60), (1000, 50), (40, 900)])
def test_boxes_are_torchvisions_for_the_same_generator_state(size):
    # (1000, 50) and (40, 900) fall outside the ratios: torchvision's central fallback.
    crop, image = TrainCrop(), Image.new("RGB", size)
    for seed in range(20):
        torch.manual_seed(seed)
        top, left, height, width = transforms.RandomResizedCrop.get_params(image, **PUBLISHED)
        assert crop.draw_box(*size, seeded(seed)) == CropBox(top, left, height, width)


def test_the_reduction_keeps_224_pixels_on_the_crops_shorter_side():
    crop = TrainCrop()
    expected = {447: 1, 448: 2, 895: 2, 896: 4, 1791: 4, 1792: 8, 5000: 8}
    for short, reduction in expected.items():
        assert crop.reduction(CropBox(0, 0, short, 2 * short)) == reduction
        assert crop.reduction(CropBox(0, 0, 2 * short, short)) == reduction


def test_at_full_size_the_pixels_are_the_published_transforms(tmp_path: Path):
    # A PNG, and a JPEG whose crop is too small to decode reduced: only the resize differs
    # (torch's uint8 bicubic against PIL's, the same filter): under 0.05 of a 0-255 step on average.
    image = photo((430, 320))
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "a.jpg", quality=95)
    for path in (tmp_path / "a.png", tmp_path / "a.jpg"):
        with Image.open(path) as opened:
            decoded = opened.convert("RGB")
        for seed in range(3):
            box = TrainCrop().draw_box(*image.size, seeded(seed))
            ours = TrainCrop().read(path, seeded(seed))
            difference = in_255_steps(ours - published_crop(decoded, box)).abs()
            assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32 and ours.is_contiguous()
            assert difference.mean() < 0.05 and difference.max() < 2


def test_a_large_jpeg_decodes_reduced_and_stays_close(tmp_path: Path):
    image = photo((1600, 1200))
    path = tmp_path / "large.jpg"
    image.save(path, quality=90)
    with Image.open(path) as opened:
        decoded = opened.convert("RGB")
    crop = TrainCrop()
    for seed in range(3):
        box = crop.draw_box(*image.size, seeded(seed))
        assert crop.reduction(box) == 4
        difference = in_255_steps(crop.read(path, seeded(seed)) - published_crop(decoded, box)).abs()
        # Rounding the box to the 1/4 grid moves it by up to 2 pixels: about 2 steps on this
        # picture; a box 8 pixels off, or height and width swapped, moves about 30.
        assert difference.mean() < 3.0
    # And the bench's figure is not the full-size path's: the reduced decode did happen.
    assert not torch.equal(crop.read(path, seeded(0)), crop(decoded, seeded(0)))


@pytest.mark.parametrize("mode,suffix", [("L", ".jpg"), ("CMYK", ".jpg"), ("P", ".png"), ("RGBA", ".png"),
                                         ("I;16", ".png")])
def test_other_modes_become_rgb_as_convert_makes_them(tmp_path: Path, mode: str, suffix: str):
    source = photo((300, 200)).convert(mode) if mode != "I;16" else photo((300, 200)).convert("L").convert("I;16")
    path = tmp_path / f"image{suffix}"
    source.save(path)
    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    out = TrainCrop().read(path, seeded(5))
    assert out.shape == (3, 224, 224)
    assert torch.equal(out, TrainCrop()(rgb, seeded(5)))


def test_unreadable_files_are_bad_inputs(tmp_path: Path):
    buffer = io.BytesIO()
    photo((800, 600)).save(buffer, format="JPEG", quality=90)
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[:5000])
    with pytest.raises(BadInput, match="unreadable_image"):
        TrainCrop().read(tmp_path / "truncated.jpg", seeded(0))
    with pytest.raises(BadInput, match="missing_image"):
        TrainCrop().read(tmp_path / "absent.jpg", seeded(0))


def _datasets(tmp_path: Path, tokenizer, seed: int) -> dict[str, PretrainDataset | FinetuneDataset]:
    for i, size in enumerate([(1200, 900), (640, 480)]):  # one decoded at 1/2, one at full size
        if not (tmp_path / f"{i}.jpg").exists():
            photo(size, seed=i).save(tmp_path / f"{i}.jpg", quality=90)
    table = write_table(tmp_path / "cc.tsv", [{"url": f"{i}.jpg", "caption": "a red circle"} for i in range(2)])
    records = write_json(tmp_path / "llava.json", [
        {"id": str(i), "image": f"{i}.jpg",
         "conversations": [{"from": "human", "value": "<image>\nWhat is in the image?"},
                           {"from": "gpt", "value": "a red circle"}]} for i in range(2)])
    return {
        "pretrain": PretrainDataset(DataConfig(tmp_path / "x.yaml", [MetaSource(table)]), tokenizer,
                                    train_transform(), max_words=64, seed=seed),
        "finetune": FinetuneDataset(DataConfig(tmp_path / "x.yaml", [MetaSource(records)]), tokenizer,
                                    train_transform(), max_words=64, seed=seed),
    }


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_a_samples_pixels_are_a_function_of_seed_epoch_and_index(tmp_path: Path, tokenizer, phase: str):
    def pixels(epoch: int, index: int, seed: int = 3) -> torch.Tensor:
        dataset = _datasets(tmp_path, tokenizer, seed)[phase]  # a fresh dataset: as after a resume
        dataset.set_epoch(epoch)
        torch.manual_seed(1000 + epoch + index)  # whatever the process's generator holds
        return dataset[index].image

    state = torch.random.get_rng_state()
    for index in (0, 1):
        first = pixels(2, index)
        assert torch.equal(first, pixels(2, index))
        assert not torch.equal(first, pixels(3, index))  # another epoch
        assert not torch.equal(first, pixels(2, index, seed=4))  # another seed
    assert not torch.equal(pixels(2, 0)[:, :100, :100], pixels(2, 1)[:, :100, :100])  # another index
    torch.random.set_rng_state(state)
    before = torch.random.get_rng_state()
    dataset = _datasets(tmp_path, tokenizer, 0)[phase]
    dataset.set_epoch(0)
    dataset[0]
    assert torch.equal(torch.random.get_rng_state(), before)  # nothing global is drawn or seeded
