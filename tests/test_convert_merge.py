"""merge-delta: the published arithmetic, refusals of a mismatched delta, never overwriting; and the
streamed torch.save files it writes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from model.convert import main as convert_main
from model.files.delta_merge import merge_delta
from model.files.tensor_files import save_tensors

PARAMS = {"dim": 32, "multiple_of": 16, "n_heads": 4, "n_layers": 2, "norm_eps": 1e-06, "vocab_size": -1}
DELTA_PARAMS = {**PARAMS, "vocab_size": 40}  # the output takes the delta's params.json, as the published script


def meta_shapes(vocab: int = 40) -> dict[str, tuple[int, ...]]:
    shapes = {"tok_embeddings.weight": (vocab, 32)}
    for i in range(2):
        shapes |= {f"layers.{i}.attention.{w}.weight": (32, 32) for w in ("wq", "wk", "wv", "wo")}
        shapes |= {f"layers.{i}.feed_forward.w1.weight": (96, 32), f"layers.{i}.feed_forward.w2.weight": (32, 96),
                   f"layers.{i}.feed_forward.w3.weight": (96, 32), f"layers.{i}.attention_norm.weight": (32,),
                   f"layers.{i}.ffn_norm.weight": (32,)}
    return shapes | {"norm.weight": (32,), "output.weight": (vocab, 32)}


def random_state(seed: int, scale: float, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {key: (torch.randn(shape, generator=gen) * scale).half() for key, shape in shapes.items()}


def write_meta_folder(folder: Path, state: dict[str, torch.Tensor], params: dict) -> Path:
    folder.mkdir(parents=True)
    torch.save(state, folder / "consolidated.00.pth")  # as Meta's files: plain torch.save
    (folder / "params.json").write_text(json.dumps(params))
    return folder


@pytest.fixture
def base_and_delta(tmp_path):
    base = random_state(0, 0.05, meta_shapes())
    delta = random_state(1, 0.001, meta_shapes())  # small against the base: float16 rounding is at stake
    base_dir = write_meta_folder(tmp_path / "llama" / "7B", base | {"rope.freqs": torch.rand(8)}, PARAMS)
    delta_dir = write_meta_folder(tmp_path / "7B_chinese_delta", delta, DELTA_PARAMS)
    return base, delta, base_dir, delta_dir


def test_merge_is_the_published_float32_sum_stored_in_float16(tmp_path, base_and_delta):
    base, delta, base_dir, delta_dir = base_and_delta
    out = tmp_path / "llama" / "7B_chinese"
    assert convert_main(["merge-delta", str(base_dir), str(delta_dir), str(out)]) == 0
    merged = torch.load(out / "consolidated.00.pth", mmap=True, weights_only=True)
    assert list(merged) == list(base)  # the base's order, rope.freqs left out
    for key in base:
        expected = (base[key].float() + delta[key].float()).half()
        assert merged[key].dtype == torch.float16 and torch.equal(merged[key], expected), key
    assert json.loads((out / "params.json").read_text()) == DELTA_PARAMS
    assert sorted(p.name for p in out.iterdir()) == ["consolidated.00.pth", "params.json"]


@pytest.mark.parametrize("spoil, message", [
    (lambda delta: delta.pop("layers.1.feed_forward.w2.weight"),
     r"lacks 1 of the base's tensors \(layers\.1\.feed_forward\.w2\.weight\)"),
    (lambda delta: delta.update({"layers.2.ffn_norm.weight": torch.ones(32).half()}),
     r"holds 1 tensors the base lacks \(layers\.2\.ffn_norm\.weight\)"),
    (lambda delta: delta.update({"layers.0.attention.wk.weight": torch.zeros(16, 32).half()}),
     r"layers\.0\.attention\.wk\.weight has shape \(16, 32\) in the delta .* but \(32, 32\) in the base"),
])
def test_a_mismatched_delta_is_refused_naming_the_key_and_nothing_is_written(tmp_path, base_and_delta, spoil, message):
    base, delta, base_dir, _ = base_and_delta
    spoil(delta)
    bad_delta = write_meta_folder(tmp_path / "bad_delta", delta, DELTA_PARAMS)
    out = tmp_path / "llama" / "7B_chinese"
    with pytest.raises(ValueError, match=message):
        merge_delta(base_dir, bad_delta, out)
    assert not any(out.iterdir())
    assert convert_main(["merge-delta", str(base_dir), str(bad_delta), str(tmp_path / "other")]) == 1


def test_an_existing_folder_is_replaced_only_with_force(tmp_path, base_and_delta):
    _, _, base_dir, delta_dir = base_and_delta
    out = tmp_path / "llama" / "7B_chinese"
    merge_delta(base_dir, delta_dir, out)
    first = (out / "consolidated.00.pth").read_bytes()
    (out / "consolidated.01.pth").write_bytes(b"a stale shard")
    with pytest.raises(FileExistsError, match="--force"):
        merge_delta(base_dir, delta_dir, out)
    assert convert_main(["merge-delta", str(base_dir), str(delta_dir), str(out)]) == 1
    assert (out / "consolidated.01.pth").read_bytes() == b"a stale shard"
    assert convert_main(["merge-delta", str(base_dir), str(delta_dir), str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["consolidated.00.pth", "params.json"]
    assert (out / "consolidated.00.pth").read_bytes() == first  # deterministic
    with pytest.raises(ValueError, match="also an input"):
        merge_delta(base_dir, delta_dir, base_dir, force=True)


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("weights_only", [True, False])
def test_streamed_files_load_as_torch_save_wrote_them(tmp_path, mmap, weights_only):
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "half": torch.randn(5, 7, generator=gen).half(), "bf16": torch.randn(3, generator=gen).bfloat16(),
        "float": torch.randn(4, 6, generator=gen)[:, ::2],  # not contiguous
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "long": torch.arange(9),
        "bool": torch.rand(4, generator=gen) > 0.5,
    }
    assert save_tensors(tmp_path / "streamed.pth", tensors.items()) == len(tensors)
    loaded = torch.load(tmp_path / "streamed.pth", mmap=mmap, weights_only=weights_only)
    assert list(loaded) == list(tensors)
    for key, tensor in tensors.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
        assert loaded[key].is_contiguous()
    assert zipfile.ZipFile(tmp_path / "streamed.pth").testzip() is None  # every record's CRC is right
    mapped = torch.load(tmp_path / "streamed.pth", mmap=True, weights_only=True)
    assert all(t.data_ptr() % 64 == 0 for t in mapped.values() if t.numel())  # aligned as torch.save aligns


def test_streamed_files_refuse_a_key_given_twice(tmp_path):
    with pytest.raises(ValueError, match="'a' given twice"):
        save_tensors(tmp_path / "twice.pth", [("a", torch.ones(1)), ("a", torch.ones(1))])


