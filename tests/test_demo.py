"""exps/demo.sh end to end on the CPU, and examples/inference.ipynb run on what it wrote.

One demo run (about a minute) serves every test here. The facts: the demo goes through the
launchers and prints its evidence; it learned: the captions of held-out pictures are right far more
often than a model that learned nothing could manage (such a model ignores the picture and says one
caption for all; the held-out pictures show every colour and shape equally often, so that caption
is right for 1 in 12), the losses fell in both phases, and fine-tuning taught it to answer questions
about pictures it never saw; it starts afresh in a folder an earlier demo used, and refuses a folder
of other files; the notebook, run top to bottom, loads the fine-tuned checkpoint and answers in the
tokenizer's words.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from evaluation.choice_metrics import parse_yes_no
from exps.demo_report import YES_NO
from exps.tiny_assets import COLOUR_QUESTION, COLOURS, SHAPE_QUESTION, SHAPES, read_tiny_assets
from model.tokenizer import Tokenizer
from support import REPO_ROOT

NOTEBOOK = REPO_ROOT / "examples" / "inference.ipynb"
DEMO_MARKER = ".imagebind_llm_demo"  # what exps/demo.sh leaves in its folder, to know it again
# Well above what ignoring the picture gets (1/12 of the captions, 1/4 of the colours, 1/3 of the
# shapes); below what the demo reached over seeds 0-4 (0.88-1.0, 1.0 and 0.71-1.0).
CAPTIONS_RIGHT_AT_LEAST = 0.5
ANSWERS_RIGHT_AT_LEAST = 0.5
# The held-out yes/no questions (two a picture, one yes and one no: chance 0.5): what issue 15 asks of
# the demo. It reached 1.0 over seeds 0-2 (0.5-0.8 at twice the learning rate).
YES_NO_ACCURACY_AT_LEAST = 0.8


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env["VENV"] = sys.prefix  # the demo's setup_venv.sh reuses the environment running these tests
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """(output folder, printed output) of one demo run, in a folder an earlier demo left a stale run in."""
    output_dir = tmp_path_factory.mktemp("demo")
    (output_dir / DEMO_MARKER).touch()
    (output_dir / "pretrain").mkdir()
    (output_dir / "pretrain" / "checkpoint-last.pth").write_bytes(b"resuming from this fails")
    result = subprocess.run(["bash", "exps/demo.sh", str(output_dir)], cwd=REPO_ROOT, env=demo_env(),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return output_dir, result.stdout


def summary(output_dir: Path) -> dict:
    return json.loads((output_dir / "summary.json").read_text())


# -- the demo -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_demo_runs_both_launchers_attached_and_prints_its_summary(demo):
    output_dir, stdout = demo
    logs = {phase: (output_dir / phase / "output.log").read_text() for phase in ("pretrain", "finetune")}
    for phase, entry in (("pretrain", "main_pretrain.py"), ("finetune", "main_finetune.py")):
        command = logs[phase].splitlines()[0]
        assert "WORLD_SIZE=1 LOCAL_WORLD_SIZE=1 " in command and entry in command and "--resume auto" in command
        assert "torch.distributed.run" not in command and "--device cpu" in command
        assert "--resume auto: no checkpoint in" in logs[phase]  # afresh: the stale run was removed
    assert f"--pretrained_path {output_dir}/pretrain/checkpoint-last.pth" in logs["finetune"]
    assert (output_dir / "summary.txt").read_text() in stdout
    assert read_tiny_assets(output_dir / "assets").root == output_dir / "assets"
    captions = summary(output_dir)["captions"]
    right = round(captions["fraction_after"] * len(captions["truth"]))
    assert f"exactly right after pre-training:     {right}/{len(captions['truth'])}" in stdout


@pytest.mark.slow
def test_pretraining_learned_to_caption_held_out_pictures(demo):
    output_dir, _ = demo
    evidence = summary(output_dir)
    captions = evidence["captions"]
    assert len(set(Counter(captions["truth"]).values())) == 1  # every caption equally often: chance is 1 in 12
    assert len(Counter(captions["truth"])) == len(COLOURS) * len(SHAPES) and captions["chance"] == 1 / 12
    assert len(set(captions["generated_before"])) == 1  # gates at zero: the frozen base ignores the picture
    assert captions["fraction_before"] <= captions["chance"]
    assert captions["fraction_after"] >= CAPTIONS_RIGHT_AT_LEAST
    assert captions["cider_after"] >= 2 * captions["cider_before"]  # pycocoevalcap's CIDEr (evaluation/)
    losses = evidence["pretrain_loss"]
    for key in ("train_loss", "val_loss"):
        assert losses["last_epoch"][key] < losses["first_epoch"][key] / 2, key


@pytest.mark.slow
def test_finetuning_taught_it_to_answer_questions_about_new_pictures(demo):
    output_dir, _ = demo
    evidence = summary(output_dir)
    for question in (COLOUR_QUESTION, SHAPE_QUESTION):
        entry = evidence["instructions"][question]
        assert entry["fraction_before"] == 0.0, question  # the pre-trained model answers with a caption
        assert entry["fraction_after"] >= ANSWERS_RIGHT_AT_LEAST > entry["chance"], question
    losses = evidence["finetune_loss"]
    assert losses["last_epoch"]["train_loss"] < losses["first_epoch"]["train_loss"] / 2


@pytest.mark.slow
def test_finetuning_taught_it_to_answer_yes_or_no_about_new_pictures(demo):
    output_dir, stdout = demo
    entry = summary(output_dir)["instructions"][YES_NO]
    questions = Counter(question.split(": ")[1] for question in entry["inputs"])
    assert set(questions) == {f"Is the shape {colour}?" for colour in COLOURS}
    labels = Counter(parse_yes_no(truth) for truth in entry["truth"])
    assert labels["yes"] == labels["no"] == len(entry["truth"]) / 2 and entry["chance"] == 0.5
    assert entry["accuracy_before"] == 0.0  # the pre-trained model captions: neither yes nor no
    assert entry["accuracy_after"] >= YES_NO_ACCURACY_AT_LEAST  # scored as evaluation/ scores POPE
    assert f"their yes or no: accuracy {entry['accuracy_after']:.0%} after" in stdout


def test_the_demo_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run(["bash", "exps/demo.sh", str(tmp_path)], cwd=REPO_ROOT, env=demo_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"demo: {tmp_path} holds files that the demo did not write" in result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


# -- the notebook -------------------------------------------------------------------------------------

def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_the_demo_files(demo, monkeypatch):
    output_dir, _ = demo
    monkeypatch.setenv("IMAGEBIND_LLM_DEMO", str(output_dir))  # the kernel inherits it
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    printed = ["".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")
               for cell in notebook.cells if cell.cell_type == "code"]
    assert "finetune checkpoint, on " in "".join(printed)
    image_cell = next(i for i, cell in enumerate(cell for cell in notebook.cells if cell.cell_type == "code")
                      if 'llm.generate({"Image": [pixels, 1]}' in cell.source)
    answer = printed[image_cell].rstrip("\n")
    # A section per other modality, each printing its names and an answer of its own.
    asked = [line for text in printed[image_cell + 1:] for line in text.splitlines() if ": " in line]
    assert [line.split(": ")[0] for line in asked] == ["Audio", "Video", "Depth", "Thermal", "IMU", "Text", "Point",
                                                       "Image + Audio", "Audio"]  # the last through the cache
    assert all(line.split(": ", 1)[1].strip() for line in asked)
    tokenizer = Tokenizer(output_dir / "assets" / "llama" / "tokenizer.model")
    ids = tokenizer.encode(answer, bos=False, eos=False)
    assert answer and not any(tokenizer.sp_model.is_byte(i) or tokenizer.sp_model.is_unknown(i) for i in ids)
    assert answer in {f"It is {colour}." for colour in COLOURS}  # the fine-tuned model, asked COLOUR_QUESTION
