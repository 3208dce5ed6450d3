"""The visual cache: the published mixing formula, building a cache (with a resume), and generation with it."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from exps import build_visual_cache as builder
from exps.tiny_assets import write_pictures, write_tiny_imagebind
from model.visual_cache import VisualCache, load_visual_cache
from support.tiny_models import TINY_IMAGEBIND, random_images, tiny_model


def published_mix(x: np.ndarray, cache: np.ndarray, size=10, t=20.0, weight=0.5) -> np.ndarray:
    """The published forward_visual's cache step, written out directly (float64, inner-product search)."""
    sims = x @ cache.T
    nearest = np.argsort(-sims, axis=1)[:, :size]
    top = np.take_along_axis(sims, nearest, axis=1) * t
    w = np.exp(top - top.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mixed = np.einsum("bk,bkd->bd", w, cache[nearest])
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    out = (1 - weight) * x + weight * mixed
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def embeddings() -> np.ndarray:
    cache = np.random.default_rng(0).standard_normal((300, 24))
    return cache / np.linalg.norm(cache, axis=1, keepdims=True)


def test_mixing_equals_the_published_formula_from_a_matrix_and_from_a_faiss_index(embeddings, tmp_path):
    x = np.random.default_rng(1).standard_normal((4, 24))
    x = 0.7 * x / np.linalg.norm(x, axis=1, keepdims=True)  # a fused embedding is shorter than 1
    expected = published_mix(x, embeddings)
    ours = VisualCache(torch.from_numpy(embeddings).float()).mix(torch.from_numpy(x).float())
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)
    index = faiss.IndexFlatIP(24)
    index.add(embeddings.astype(np.float32))
    faiss.write_index(index, str(tmp_path / "knn.index"))
    from_index = load_visual_cache(tmp_path / "knn.index").mix(torch.from_numpy(x).float())
    np.testing.assert_allclose(from_index.numpy(), expected, rtol=0, atol=1e-5)
    assert not np.allclose(expected, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-3)  # it moved


def test_a_cache_build_killed_halfway_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, tiny_imagebind):
    write_pictures(tmp_path / "pictures", 10, seed=0, prefix="p")
    (tmp_path / "pictures" / "broken.png").write_bytes(b"not a picture")
    images = builder.list_images(tmp_path / "pictures")
    assert len(images) == 11
    encoder = builder.vision_encoder(*tiny_imagebind, torch.device("cpu"))
    whole = builder.build_cache(images, tmp_path / "whole.pt", encoder, torch.device("cpu"), batch_size=3, save_every=1)
    assert len(whole["paths"]) == 10 and whole["skipped"] == [str(tmp_path / "pictures" / "broken.png")]

    real_load, calls = builder.load_image, []

    def dying_load(path, transform):  # the process "dies" on the 8th image
        calls.append(path)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real_load(path, transform)

    monkeypatch.setattr(builder, "load_image", dying_load)
    with pytest.raises(KeyboardInterrupt):
        builder.build_cache(images, tmp_path / "cache.pt", encoder, torch.device("cpu"), batch_size=3, save_every=1)
    assert (tmp_path / "cache.pt.partial").is_file() and not (tmp_path / "cache.pt").exists()
    monkeypatch.setattr(builder, "load_image", real_load)
    resumed = builder.build_cache(images, tmp_path / "cache.pt", encoder, torch.device("cpu"), batch_size=3, save_every=1)
    assert resumed["paths"] == whole["paths"] and resumed["skipped"] == whole["skipped"]
    torch.testing.assert_close(resumed["embeddings"], whole["embeddings"])
    assert not (tmp_path / "cache.pt.partial").exists()


def test_generation_with_the_cache_on_and_off(tokenizer, tmp_path, tiny_imagebind):
    model = tiny_model("finetune", tokenizer).eval()
    sound = torch.randn(1, 3, 1, 128, 204)
    prompt = ["What do you hear?"]
    off = model.forward_visual({"Audio": [sound, 1]})
    cache = torch.nn.functional.normalize(model.encode("vision", random_images(6)), dim=-1)
    torch.save({"format": "imagebind-llm-visual-cache/1", "embeddings": cache, "paths": [], "skipped": []},
               tmp_path / "cache.pt")
    model.use_visual_cache(tmp_path / "cache.pt", size=3)
    on = model.forward_visual({"Audio": [sound, 1]})
    fused = torch.nn.functional.normalize(model.encode("audio", sound), dim=-1) / (1 + 1e-6)
    torch.testing.assert_close(on, model.bridge(model.visual_cache.mix(fused).unsqueeze(1)))
    assert not torch.allclose(on, off)
    assert model.generate_ids({"Audio": [sound, 1]}, prompt, max_gen_len=3, temperature=0.0)[0]
    model.use_visual_cache(None)
    torch.testing.assert_close(model.forward_visual({"Audio": [sound, 1]}), off)


def test_a_file_that_is_not_a_cache_is_refused(tmp_path):
    torch.save({"embeddings": torch.zeros(2, 3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a visual cache file"):
        load_visual_cache(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="build one with python -m exps.build_visual_cache"):
        load_visual_cache(tmp_path / "none.pt")


@pytest.fixture(scope="module")
def tiny_imagebind(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagebind")
    write_tiny_imagebind(folder / "tiny.pth", folder / "tiny.yaml", seed=0, imagebind_args=TINY_IMAGEBIND)
    return folder / "tiny.pth", TINY_IMAGEBIND
