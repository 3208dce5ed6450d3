"""bench/loader.py on a few tiny images: its JSON line, the same images every run, and the
side-by-side timing of another dataset module laid out as the published one is."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from bench import loader

# Laid out as the published imagebind_LLM/data/dataset.py is (its classes, their arguments,
# transform_train); it counts the samples it makes, so the test knows both loaders ran.
FAKE_PUBLIC = '''
import torch
from PIL import Image

made = []


def transform_train(image):
    return torch.zeros(3, 224, 224)


class PretrainDataset:
    def __init__(self, config_path, transform, max_words=30, tokenizer_path=None):
        print("DATASET CONFIG:", config_path)  # as the published class does: not on the JSON line
        self.rows = open(config_path).read().count("- ")
        self.paths = sorted(str(p) for p in __import__("pathlib").Path(config_path).parent.glob("images/*.jpg"))
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        made.append(index)
        return self.transform(Image.open(self.paths[index]).convert("RGB"))


FinetuneDataset = PretrainDataset
'''


def test_one_json_line_with_rates_per_phase(tmp_path: Path, capsys):
    assert loader.main(["--images", "3", "--repeats", "2", "--smallest", "40x30", "--largest", "80x60",
                        "--folder", str(tmp_path / "data")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["bench"] == "loader" and result["images"] == 3 and result["repeats"] == 2
    assert result["threads"] == 1 and result["jpeg_quality"] == 90
    assert set(result["samples_per_s"]) == {"pretrain", "finetune"}
    assert all(rate > 0 for rate in result["samples_per_s"].values())
    assert "speedup" not in result


def test_the_process_gets_its_cores_and_threads_back(tmp_path: Path, capsys):
    # main pins itself to one core with one thread while it times; a caller (this test session)
    # keeps what it had.
    threads = torch.get_num_threads()
    cores = os.sched_getaffinity(0)
    loader.main(["--images", "1", "--repeats", "1", "--smallest", "40x30", "--largest", "40x30",
                 "--phases", "pretrain", "--folder", str(tmp_path)])
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == cores


def test_the_images_are_the_same_every_run_and_span_the_sizes(tmp_path: Path):
    sizes = loader.image_sizes(5, (500, 375), (2000, 1500))
    assert sizes[0] == (500, 375) and sizes[-1] == (2000, 1500) and sizes[3] == (1219, 1625)  # every 4th upright
    first = loader.make_data(tmp_path / "a", 2, (40, 30), (64, 48))
    loader.make_data(tmp_path / "b", 2, (40, 30), (64, 48))
    for name in ("0000.jpg", "0001.jpg"):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    assert first["pretrain"].read_text().startswith("META:")


def test_public_loader_is_timed_alongside(tmp_path: Path, capsys):
    public = tmp_path / "public"
    (public / "data").mkdir(parents=True)
    (public / "data" / "dataset.py").write_text(textwrap.dedent(FAKE_PUBLIC))
    assert loader.main(["--images", "2", "--repeats", "3", "--smallest", "40x30", "--largest", "64x48",
                        "--phases", "pretrain", "--public", str(public), "--folder", str(tmp_path / "data")]) == 0
    result = json.loads(capsys.readouterr().out)  # one line: the published class's prints went to stderr
    assert set(result["public_samples_per_s"]) == set(result["speedup"]) == {"pretrain"}
    ratio = result["samples_per_s"]["pretrain"] / result["public_samples_per_s"]["pretrain"]
    assert result["speedup"]["pretrain"] == pytest.approx(ratio, rel=0.01)


def test_a_public_folder_without_the_dataset_is_refused(tmp_path: Path):
    with pytest.raises(SystemExit):
        loader.main(["--public", str(tmp_path)])
