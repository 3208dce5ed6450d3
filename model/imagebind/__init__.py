"""ImageBind, the frozen encoder: one trunk per modality into one shared embedding space.

    model.py           ImageBindModel (the six modalities, the public code's module names),
                       imagebind_huge(), ModalityType
    preprocessors.py   raw tensor -> tokens: patch stems, positional embeddings, the text embedding
    trunk.py           the transformer blocks of a modality
    heads.py           one token -> LayerNorm -> projection, then the L2 norm (x logit scale)

Reading `imagebind_huge.pth` is model/files/'s work; this package holds tensors only.
"""

from model.imagebind.model import ImageBindModel, ModalityType, imagebind_huge

__all__ = ["ImageBindModel", "ModalityType", "imagebind_huge"]
