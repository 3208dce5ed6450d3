"""The 3D point branch against the published encoder, point cloud files, and generation from points.

tests/fixtures/points/ holds two clouds and what the published Point-BERT branch (OpenGVLab's
imagebind_LLM, in a scratch environment) made of them with weights set by a rule (MAKING.md there):
every tensor drawn from numpy's generator seeded with the CRC-32 of its name, so that the
22.7M weights need not be stored."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from data.bad_samples import TOO_SHORT, UNREADABLE_FILE, BadInput
from data.modality_inputs import read_inputs
from data.point_clouds import load_point_cloud
from exps.modality_examples import write_points
from model.adapter import ImageBindLLM
from model.imagebind.model import ImageBindModel, ModalityType
from model.files.summary import IMAGEBIND, flat_layout
from model.imagebind.points import farthest_point_indices
from support import REPO_ROOT
from support.tiny_models import TINY_IMAGEBIND, random_images, randomise_llama_and_adapter_, tiny_llama_args

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "points"


def rule_value(key: str, current: torch.Tensor) -> torch.Tensor:
    """MAKING.md's rule for one tensor of the branch."""
    if key.endswith("num_batches_tracked") or key.endswith("log_logit_scale"):
        return current
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    shape = tuple(current.shape)
    if key.endswith("running_var"):
        values = 1.0 + 0.5 * rng.random(shape)
    elif key.endswith("running_mean"):
        values = 0.1 * rng.standard_normal(shape)
    elif key.endswith(".weight") and current.ndim == 1:
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    else:
        values = 0.05 * rng.standard_normal(shape)
    return torch.from_numpy(values.astype(np.float32))


@pytest.fixture(scope="module")
def encoder() -> ImageBindModel:
    model = ImageBindModel(**{**TINY_IMAGEBIND, "out_embed_dim": 1024}, point_branch=True).eval()
    state = model.state_dict()
    point_keys = sorted(key for key in state if "point" in key.split(".")[0] or ".point." in key)
    assert len(point_keys) == 165
    model.load_state_dict({key: rule_value(key, state[key]) for key in point_keys}, strict=False)
    return model


def test_the_point_encoder_equals_the_published_one(encoder):
    golden = np.load(FIXTURES / "golden.npz")
    clouds = torch.from_numpy(np.load(FIXTURES / "clouds.npy"))
    trunk = encoder.point_trunk
    with torch.no_grad():
        torch.manual_seed(0)  # the published sampler draws its start points from torch's generator
        np.testing.assert_array_equal(farthest_point_indices(clouds, 512).numpy(), golden["centers"])
        torch.manual_seed(0)
        pc_feat = trunk.point_encoder(clouds)
        head = encoder.modality_heads[ModalityType.POINT](pc_feat @ trunk.pc_projection)
        embedding = encoder.modality_postprocessors[ModalityType.POINT](head)  # embed()'s last steps
    np.testing.assert_allclose(pc_feat.numpy(), golden["pc_feat"], rtol=0, atol=1e-5)
    with torch.no_grad():
        projected = pc_feat @ trunk.pc_projection
    np.testing.assert_allclose(projected.numpy(), golden["trunk"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(head.numpy(), golden["head"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(embedding.numpy(), golden["embedding"], rtol=0, atol=1e-5)


def test_a_seeded_generator_gives_the_same_centres_as_the_seeded_global_one():
    clouds = torch.from_numpy(np.load(FIXTURES / "clouds.npy"))
    golden = np.load(FIXTURES / "golden.npz")
    chosen = farthest_point_indices(clouds, 512, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(chosen.numpy(), golden["centers_seed1"])


# -- point cloud files ------------------------------------------------------------------------------

def write_every_format(folder, points: np.ndarray) -> dict[str, object]:
    count = len(points)
    paths = {}
    np.save(folder / "cloud.npy", points)
    torch.save(torch.from_numpy(points), folder / "cloud.pt")
    rows = "\n".join(f"{x:.7f} {y:.7f} {z:.7f}" for x, y, z in points)
    (folder / "cloud.xyz").write_text(rows + "\n")
    (folder / "cloud.obj").write_text("# a cloud\n" + "\n".join(f"v {row}" for row in rows.splitlines()) + "\nf 1 2 3\n")
    ply_header = (f"ply\nformat {{}} 1.0\nelement vertex {count}\nproperty float x\nproperty float y\n"
                  "property float z\nproperty uchar red\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
    coloured = np.zeros(count, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1")])
    coloured["x"], coloured["y"], coloured["z"] = points.T
    (folder / "binary.ply").write_bytes(ply_header.format("binary_little_endian").encode() + coloured.tobytes())
    (folder / "ascii.ply").write_text(ply_header.format("ascii") + "\n".join(f"{row} 7" for row in rows.splitlines()) + "\n")
    pcd_header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
                  "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {kind}\n")
    (folder / "ascii.pcd").write_text(pcd_header.format(n=count, kind="ascii") + rows + "\n")
    (folder / "binary.pcd").write_bytes(pcd_header.format(n=count, kind="binary").encode() + points.astype("<f4").tobytes())
    for name in ("cloud.npy", "cloud.pt", "cloud.xyz", "cloud.obj", "binary.ply", "ascii.ply", "ascii.pcd", "binary.pcd"):
        paths[name] = folder / name
    return paths


def test_every_point_cloud_format_reads_to_the_same_points(tmp_path):
    points = np.random.default_rng(0).uniform(-1, 1, size=(600, 3)).astype(np.float32)
    for name, path in write_every_format(tmp_path, points).items():
        read = load_point_cloud(path)
        assert read.dtype == torch.float32 and read.shape == (600, 3), name
        np.testing.assert_allclose(read.numpy(), points, rtol=0, atol=1e-6, err_msg=name)


def test_bad_point_clouds_are_bad_inputs(tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((100, 3), np.float32))
    np.save(tmp_path / "nan.npy", np.full((600, 3), np.nan, np.float32))
    (tmp_path / "cloud.stl").write_text("solid nothing")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 600\n")
    for name, reason in (("few.npy", TOO_SHORT), ("nan.npy", UNREADABLE_FILE), ("cloud.stl", UNREADABLE_FILE),
                         ("broken.ply", UNREADABLE_FILE)):
        with pytest.raises(BadInput) as caught:
            load_point_cloud(tmp_path / name)
        assert caught.value.reason == reason and name in caught.value.detail


def test_generation_from_a_point_cloud_alone_and_beside_a_picture(tokenizer, tmp_path):
    torch.manual_seed(0)
    imagebind = {**TINY_IMAGEBIND, "point_branch": True, "point_embed_dim": 16, "point_num_blocks": 1, "point_num_heads": 2}
    model = randomise_llama_and_adapter_(ImageBindLLM(tiny_llama_args(), "finetune", imagebind, tokenizer=tokenizer), 0).eval()
    inputs = read_inputs({"Point": [write_points(tmp_path / "torus.ply"), 1]})
    assert inputs["Point"][0].shape == (1, 2048, 3)
    prompt = ["What is this object?"]
    torch.manual_seed(0)
    alone = model.generate_ids(inputs, prompt, max_gen_len=4, temperature=0.0)[0]
    torch.manual_seed(0)
    assert alone and alone == model.generate_ids(inputs, prompt, max_gen_len=4, temperature=0.0)[0]
    together = {**inputs, "Image": [random_images(1), 1]}
    torch.manual_seed(0)
    visual = model.forward_visual(together)
    torch.manual_seed(0)
    expected = model.visual_tokens([(model.encode("point", inputs["Point"][0]), 1),
                                    (model.encode("vision", together["Image"][0]), 1)])
    torch.testing.assert_close(visual, expected)
    assert model.generate_ids(together, prompt, max_gen_len=4, temperature=0.0)[0]


def test_a_3d_imagebind_file_is_known_as_imagebind_weights():
    with torch.device("meta"):
        with_points = ImageBindModel(**TINY_IMAGEBIND, point_branch=True).state_dict()
    assert flat_layout(with_points) == IMAGEBIND  # the dry run and `inspect` accept imagebind_w3D.pth
