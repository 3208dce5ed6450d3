"""The visual cache of the ImageBind-LLM paper: pull an embedding towards the image embeddings it is near.

The model was trained on image embeddings only; at inference an audio, video or 3D embedding lies
elsewhere in ImageBind's space. The published code (`load(..., knn=True)`) closes the gap with a
cache of image embeddings: for the fused embedding x of a sample,

    sims, nearest = the `size` cached embeddings with the largest inner product with x (top-k)
    w      = softmax(temperature x sims)
    mixed  = normalise(w @ nearest)
    x'     = normalise((1 - weight) x + weight x mixed)

with size 10, temperature 20 and weight 0.5 as published, and x' goes into the bridge instead of
x. Off unless a cache is given (`model.load(..., visual_cache=PATH)`, `llm.use_visual_cache(...)`).

Two kinds of file hold a cache: this project's (`python -m exps.build_visual_cache`: a torch file
with unit-norm image embeddings [M, D] and the images' paths), searched with one matrix product;
and the published `knn.index` (a faiss index), searched by faiss itself, exactly as the published
code searches it (faiss-cpu is imported only for such a file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CACHE_FORMAT = "imagebind-llm-visual-cache/1"
SIZE, TEMPERATURE, WEIGHT = 10, 20.0, 0.5  # the published defaults


def mix_with_neighbours(x: torch.Tensor, sims: torch.Tensor, neighbours: torch.Tensor,
                        temperature: float = TEMPERATURE, weight: float = WEIGHT) -> torch.Tensor:
    """x [B, D] mixed with its neighbours [B, k, D] of similarities sims [B, k] (the module docstring)."""
    weights = (sims * temperature).softmax(dim=-1)
    mixed = torch.bmm(weights.unsqueeze(1), neighbours).squeeze(1)
    mixed = mixed / mixed.norm(dim=-1, keepdim=True)
    out = (1 - weight) * x + weight * mixed
    return out / out.norm(dim=-1, keepdim=True)


@dataclass
class VisualCache:
    """Cached image embeddings and the published mixing settings; `mix(x)` applies the cache."""

    embeddings: torch.Tensor | None  # [M, D] (this project's files)
    faiss_index: Any = None  # the published knn.index, searched by faiss
    size: int = SIZE
    temperature: float = TEMPERATURE
    weight: float = WEIGHT

    @property
    def count(self) -> int:
        return int(self.faiss_index.ntotal) if self.faiss_index is not None else self.embeddings.shape[0]

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarities [B, k], embeddings [B, k, D]) of the k = min(size, count) nearest cached embeddings."""
        k = min(self.size, self.count)
        if self.faiss_index is not None:
            import numpy as np

            sims, indices = self.faiss_index.search(x.detach().float().cpu().numpy(), k)
            found = np.stack([self.faiss_index.reconstruct(int(i)) for i in indices.reshape(-1)])
            neighbours = torch.from_numpy(found).reshape(*indices.shape, -1)
            return torch.from_numpy(sims).to(x.device), neighbours.to(x.device)
        cache = self.embeddings.to(device=x.device, dtype=torch.float32)
        sims, indices = (x.float() @ cache.T).topk(k, dim=-1)
        return sims, cache[indices]

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """The fused embeddings x [B, D] pulled towards their nearest cached image embeddings (float32)."""
        if x.shape[-1] != (self.faiss_index.d if self.faiss_index is not None else self.embeddings.shape[1]):
            raise ValueError(f"the visual cache holds embeddings of another width than the encoder's {x.shape[-1]}")
        sims, neighbours = self.nearest(x)
        return mix_with_neighbours(x.float(), sims, neighbours, self.temperature, self.weight)


def load_visual_cache(path: str | Path, **settings: Any) -> VisualCache:
    """A cache from this project's file or the published faiss `knn.index`; `settings` override size,
    temperature and weight."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"visual cache not found at {path}: build one with python -m exps.build_visual_cache, "
                                "or give the published knn.index")
    if path.suffix == ".index":
        try:
            import faiss
        except ImportError as error:
            raise ImportError("reading a faiss index needs faiss-cpu: pip install -r requirements.txt") from error
        return VisualCache(None, faiss.read_index(str(path)), **settings)
    contents = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(contents, dict) or contents.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not a visual cache file (python -m exps.build_visual_cache writes them; "
                         "the published cache is a faiss .index file)")
    return VisualCache(F.normalize(contents["embeddings"].float(), dim=-1), **settings)
