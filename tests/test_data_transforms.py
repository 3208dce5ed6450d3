import torch
from PIL import Image

from data.train_crop import TrainCrop
from data.transforms import CLIP_MEAN, CLIP_STD, eval_transform, train_transform


def uniform_image(size, colour=(255, 128, 0)) -> Image.Image:
    return Image.new("RGB", size, colour)


def expected_uniform(colour) -> torch.Tensor:
    values = [(c / 255 - m) / s for c, m, s in zip(colour, CLIP_MEAN, CLIP_STD)]
    return torch.tensor(values).view(3, 1, 1).expand(3, 224, 224)


def test_both_transforms_give_clip_normalised_224_squares():
    for transform in (train_transform(), eval_transform()):
        for size in ((320, 240), (100, 500), (224, 224)):
            out = transform(uniform_image(size))
            assert out.shape == (3, 224, 224) and out.dtype == torch.float32
            torch.testing.assert_close(out, expected_uniform((255, 128, 0)), rtol=0, atol=1e-5)


def test_train_crop_has_the_published_parameters():
    # The published RandomResizedCrop(224, scale=(0.9, 1.0), ratio=(0.75, 1.3333), BICUBIC); that
    # TrainCrop draws its boxes and resizes as that transform does: tests/test_data_train_crop.py.
    crop = train_transform()
    assert isinstance(crop, TrainCrop)
    assert crop.size == 224 and crop.scale == (0.9, 1.0) and crop.ratio == (0.75, 1.3333)


def test_eval_is_resize_then_centre_crop():
    # A 448 x 224 image whose left and right quarters are black: resizing keeps the aspect, so the
    # centre crop sees only the white middle half.
    image = Image.new("RGB", (448, 224), (0, 0, 0))
    image.paste((255, 255, 255), (112, 0, 336, 224))
    out = eval_transform()(image)
    torch.testing.assert_close(out[:, :, 8:-8], expected_uniform((255, 255, 255))[:, :, 8:-8], rtol=0, atol=1e-5)
