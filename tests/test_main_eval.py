"""main_eval.py on the tiny model: a captioning and a yes/no benchmark, resumed, and over two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from PIL import Image

import main_eval
from evaluation.choice_metrics import parse_yes_no
from support import REPO_ROOT, free_port
from support.tiny_models import TINY_IMAGEBIND, save_checkpoint, tiny_model, write_user_files

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer, tokenizer_path):
    root = tmp_path_factory.mktemp("eval")
    source = tiny_model("finetune", tokenizer=tokenizer).eval()
    llama_dir, imagebind_path = write_user_files(root, source, tokenizer_path, llama_type="tiny")
    checkpoint = save_checkpoint(root / "7B.pth", source.state_dict_released())
    (root / "imagebind.yaml").write_text(yaml.safe_dump(TINY_IMAGEBIND))
    images = root / "images"
    images.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (32, 32), colour).save(images / f"{name}.png")
    coco = {"images": [{"id": i, "file_name": f"{name}.png"} for i, name in enumerate(COLOURS)],
            "annotations": [{"image_id": i, "id": 10 + i, "caption": f"a {name} square"} for i, name in enumerate(COLOURS)]}
    (root / "captions.json").write_text(json.dumps(coco))
    pope = [{"question_id": n, "image": f"{name}.png", "text": f"Is the square {other}?", "label": "yes" if name == other else "no"}
            for n, (name, other) in enumerate((a, b) for a in COLOURS for b in COLOURS)]
    (root / "pope.jsonl").write_text("\n".join(json.dumps(line) for line in pope) + "\n")
    (root / "eval.yaml").write_text(
        f"BENCHMARKS:\n"
        f"  - name: tiny_captions\n    format: coco\n    annotation_file: {root / 'captions.json'}\n"
        f"    image_dir: {images}\n    max_gen_len: 6\n"
        f"  - name: tiny_pope\n    format: pope\n    question_file: {root / 'pope.jsonl'}\n    image_dir: {images}\n"
        f"    prompt: \"{{question}} Answer yes or no.\"\n    max_gen_len: 4\n")
    # Resuming and sharding are tested on the yes/no benchmark alone: caption metrics start Java (seconds).
    (root / "pope.yaml").write_text("\n".join((root / "eval.yaml").read_text().splitlines()[:1] +
                                              (root / "eval.yaml").read_text().splitlines()[6:]) + "\n")
    flags = ["--checkpoint", str(checkpoint), "--llama_dir", str(llama_dir), "--imagebind_path", str(imagebind_path),
             "--imagebind_config", str(root / "imagebind.yaml"), "--device", "cpu", "--batch_size", "2"]
    return root, flags


@pytest.fixture(scope="module")
def pope_reference(setup):
    """One uninterrupted run of the yes/no benchmark in one process."""
    root, flags = setup
    main_eval.main([*flags, "--eval_config", str(root / "pope.yaml"), "--output_dir", str(root / "reference")])
    return root / "reference"


def predictions_of(output_dir, name: str) -> dict[str, str]:
    lines = [json.loads(line) for path in sorted((output_dir / "predictions").glob(f"{name}.rank*.jsonl"))
             for line in path.read_text().splitlines() if line.endswith("}")]  # not a line a kill cut short
    ids = [line["sample_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a sample was answered twice"
    return {line["sample_id"]: line["prediction"] for line in lines}


def test_one_process_answers_every_sample_and_scores_both_benchmarks(setup):
    root, flags = setup
    output = root / "one"
    main_eval.main([*flags, "--eval_config", str(root / "eval.yaml"), "--output_dir", str(output)])
    results = json.loads((output / "metrics.json").read_text())["benchmarks"]
    captions, pope = results["tiny_captions"], results["tiny_pope"]
    assert captions["scored"] == 3 and set(captions["metrics"]) >= {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert pope["scored"] == 9 and pope["prompt"] == "{question} Answer yes or no."
    predicted = predictions_of(output, "tiny_pope")
    labels = {str(n): ("yes" if n in (0, 4, 8) else "no") for n in range(9)}
    assert pope["metrics"]["accuracy"] == sum(parse_yes_no(predicted[k]) == v for k, v in labels.items()) / 9
    assert "| tiny_pope | yes_no | 9 | accuracy |" in (output / "metrics.md").read_text()


def test_a_run_stopped_halfway_resumes_without_answering_anything_twice(setup, pope_reference):
    root, flags = setup
    flags, resumed = [*flags, "--eval_config", str(root / "pope.yaml")], root / "resumed"
    main_eval.main([*flags, "--output_dir", str(resumed), "--limit", "4"])  # "killed" after four answers
    with open(resumed / "predictions" / "tiny_pope.rank0.jsonl", "a") as cut:
        cut.write('{"sample_id": "5", "predic')  # a line the kill cut short
    main_eval.main([*flags, "--output_dir", str(resumed)])
    assert predictions_of(resumed, "tiny_pope") == predictions_of(pope_reference, "tiny_pope")
    reference = pope_reference
    expected = json.loads((reference / "metrics.json").read_text())["benchmarks"]
    got = json.loads((resumed / "metrics.json").read_text())["benchmarks"]
    assert {k: v["metrics"] for k, v in got.items()} == {k: v["metrics"] for k, v in expected.items()}


def test_two_processes_under_torchrun_give_the_metrics_of_one(setup, pope_reference):
    root, flags = setup
    reference, two = pope_reference, root / "two"
    flags = [*flags, "--eval_config", str(root / "pope.yaml")]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                             str(REPO_ROOT / "main_eval.py"), *flags, "--output_dir", str(two)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in (two / "predictions").iterdir()) == ["tiny_pope.rank0.jsonl", "tiny_pope.rank1.jsonl"]
    assert predictions_of(two, "tiny_pope") == predictions_of(reference, "tiny_pope")
    expected = json.loads((reference / "metrics.json").read_text())["benchmarks"]
    got = json.loads((two / "metrics.json").read_text())["benchmarks"]
    assert {k: v["metrics"] for k, v in got.items()} == {k: v["metrics"] for k, v in expected.items()}


def test_a_dry_run_prints_the_plan_and_a_config_mistake_is_one_line(setup, tmp_path, capsys):
    root, flags = setup
    main_eval.main([*flags, "--eval_config", str(root / "eval.yaml"), "--output_dir", str(tmp_path / "dry"), "--dry_run"])
    printed = capsys.readouterr().out
    assert "tiny_captions: caption, 3 samples" in printed and "tiny_pope: yes_no, 9 samples" in printed
    assert not (tmp_path / "dry").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"BENCHMARKS:\n  - format: pope\n    question_file: {root / 'pope.jsonl'}\n    image_root: x\n")
    with pytest.raises(SystemExit) as exited:
        main_eval.main([*flags, "--eval_config", str(bad), "--output_dir", str(tmp_path / "dry"), "--dry_run"])
    assert exited.value.code == 1
