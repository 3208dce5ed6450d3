"""Image transforms: an image -> FloatTensor[3, 224, 224] normalised as CLIP (and ImageBind) expect.

eval_transform is ImageBind's own preprocessing, exactly; train_transform is the published random
crop, read fast from the file (data/train_crop.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.tokenizer import IMAGE_SIZE

if TYPE_CHECKING:
    from torchvision import transforms

    from data.train_crop import TrainCrop

# CLIP's statistics, which ImageBind's vision encoder was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# torchvision is imported where a transform is made, not with this module: importing it takes
# seconds (it loads its models and torch._dynamo), which the launchers' pre-flight, which reads
# data but transforms none, should not pay.


def train_transform() -> TrainCrop:
    """The training crop: the published RandomResizedCrop (90-100% of the area, ratio 0.75-1.3333,
    bicubic) drawn from a generator passed in, with the fast decode of data/train_crop.py."""
    from data.train_crop import TrainCrop

    return TrainCrop()


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
