"""Image transforms: PIL image -> FloatTensor[3, 224, 224] normalised as CLIP (and ImageBind) expect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.tokenizer import IMAGE_SIZE

if TYPE_CHECKING:
    from torchvision import transforms

# CLIP's statistics, which ImageBind's vision encoder was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# torchvision is imported where a transform is made, not with this module: importing it takes
# seconds (it loads its models and torch._dynamo), which the launchers' pre-flight, which reads
# data but transforms none, should not pay.


def train_transform() -> transforms.Compose:
    """The published training transform: a mild random crop (90-100% of the area), bicubic."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    return transforms.Compose([
        transforms.RandomResizedCrop(
            size=(IMAGE_SIZE, IMAGE_SIZE),
            scale=(0.9, 1.0),
            ratio=(0.75, 1.3333),  # the published value, not exactly 4/3
            interpolation=InterpolationMode.BICUBIC,
        ),
        transforms.ToTensor(),
        transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
    ])


def eval_transform() -> transforms.Compose:
    """ImageBind's `load_and_transform_vision_data`: shorter side to 224 (bicubic), centre crop."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    return transforms.Compose([
        transforms.Resize(IMAGE_SIZE, interpolation=InterpolationMode.BICUBIC),
        transforms.CenterCrop(IMAGE_SIZE),
        transforms.ToTensor(),
        transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
    ])
