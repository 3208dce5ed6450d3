"""Benchmark readers on tiny files in each benchmark's published layout, written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.benchmarks import (
    Benchmark,
    BenchmarkFormatError,
    read_clotho_captions,
    read_coco_captions,
    read_karpathy_split,
    read_mme,
    read_pope,
    read_scienceqa,
    read_textvqa,
    read_vqav2,
)
from model.tokenizer import CAPTION_INSTRUCTION


def touch(path: Path) -> Path:
    """A stand-in media file: the readers check that inputs exist, they do not decode them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8")
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def reasons(benchmark: Benchmark) -> list[str]:
    return [reason for _, reason in benchmark.problems]


# --- captioning ---


def test_coco_captions(tmp_path):
    touch(tmp_path / "img" / "a.jpg")
    touch(tmp_path / "img" / "b.jpg")
    path = write_json(tmp_path / "captions_val.json", {
        "images": [
            {"id": 1, "file_name": "a.jpg", "domain": "in-domain"},
            {"id": 2, "file_name": "b.jpg"},
            {"id": 3, "file_name": "missing.jpg"},
            {"id": 4},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A cat."},
            {"id": 11, "image_id": 1, "caption": "A kitten on a mat."},
            {"id": 12, "image_id": 2, "caption": "A dog."},
            {"id": 13, "image_id": 2, "caption": None},
            {"id": 14, "image_id": 3, "caption": "Lost."},
            {"id": 15, "image_id": 99, "caption": "Orphan."},
        ],
    })
    benchmark = read_coco_captions(path, tmp_path / "img")
    assert benchmark.task == "caption"
    assert [sample.sample_id for sample in benchmark.samples] == ["1", "2"]
    first = benchmark.samples[0]
    assert first.inputs == {"Image": str(tmp_path / "img" / "a.jpg")}
    assert first.references == ["A cat.", "A kitten on a mat."]
    assert first.question == CAPTION_INSTRUCTION and first.extra == {"domain": "in-domain"}
    assert benchmark.samples[1].references == ["A dog."]
    where = dict((reason, where) for where, reason in benchmark.problems)
    assert len(benchmark.problems) == 4
    assert where["'caption' is None, not a non-empty string"] == f"{path}: id 13 (annotation)"
    assert f"missing image file {tmp_path / 'img' / 'missing.jpg'}" in where
    assert "no 'file_name'" in where
    assert where["captions for an image not in 'images'"] == f"{path}: image_id 99"


def test_coco_captions_rejects_other_formats(tmp_path):
    karpathy = write_json(tmp_path / "dataset_coco.json", {"images": [{"filename": "a.jpg", "split": "test"}]})
    with pytest.raises(BenchmarkFormatError, match=f"{karpathy}: no list under 'annotations'.*COCO captions"):
        read_coco_captions(karpathy, tmp_path)
    instances = write_json(tmp_path / "instances.json", {"images": [], "annotations": [{"image_id": 1, "bbox": []}]})
    with pytest.raises(BenchmarkFormatError, match="no annotation has a caption"):
        read_coco_captions(instances, tmp_path)
    not_json = tmp_path / "captions.csv"
    not_json.write_text("file_name,caption\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{not_json}: not a JSON file"):
        read_coco_captions(not_json, tmp_path)


def test_karpathy_split_picks_one_split(tmp_path):
    touch(tmp_path / "coco" / "val2014" / "COCO_val2014_1.jpg")
    touch(tmp_path / "coco" / "val2014" / "COCO_val2014_2.jpg")
    path = write_json(tmp_path / "dataset_coco.json", {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_1.jpg", "imgid": 0, "cocoid": 1, "split": "test",
         "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}, {"raw": "A kitten."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_2.jpg", "imgid": 1, "cocoid": 2, "split": "train",
         "sentences": [{"raw": "A dog."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_2.jpg", "imgid": 2, "cocoid": 3, "split": "test",
         "sentences": []},
    ]})
    benchmark = read_karpathy_split(path, tmp_path / "coco", split="test")
    assert benchmark.name == "coco_karpathy_test"
    assert [(s.sample_id, s.references) for s in benchmark.samples] == [("1", ["A cat.", "A kitten."])]
    assert benchmark.samples[0].inputs["Image"] == str(tmp_path / "coco" / "val2014" / "COCO_val2014_1.jpg")
    assert benchmark.problems == [(f"{path}: imgid 2", "'sentences' is empty")]
    assert [s.sample_id for s in read_karpathy_split(path, tmp_path / "coco", split="train").samples] == ["2"]
    splits = r"no image in split 'val'; the file's splits are \['test', 'train'\]"
    with pytest.raises(BenchmarkFormatError, match=splits):
        read_karpathy_split(path, tmp_path / "coco", split="val")


def test_karpathy_flickr_without_filepath_uses_imgid(tmp_path):
    touch(tmp_path / "flickr" / "100.jpg")
    path = write_json(tmp_path / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": [
        {"filename": "100.jpg", "imgid": 7, "split": "test", "sentences": [{"raw": "Two people."}]},
    ]})
    benchmark = read_karpathy_split(path, tmp_path / "flickr")
    assert benchmark.samples[0].sample_id == "7"
    assert benchmark.samples[0].inputs == {"Image": str(tmp_path / "flickr" / "100.jpg")}


def test_clotho_captions(tmp_path):
    touch(tmp_path / "audio" / "rain, heavy.wav")
    touch(tmp_path / "audio" / "birds.wav")
    path = tmp_path / "clotho_captions_evaluation.csv"
    path.write_text(
        "\ufefffile_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
        '"rain, heavy.wav",Rain falls hard.,"Heavy rain, on a roof.",Rain.,Rain pours.,Water falls.\n'
        "birds.wav,Birds sing.,,Birds chirp.,,\n"
        "gone.wav,Something.,,,,\n"
        "empty.wav,,,,,\n",
        encoding="utf-8",
    )
    benchmark = read_clotho_captions(path, tmp_path / "audio")
    assert [s.sample_id for s in benchmark.samples] == ["rain, heavy.wav", "birds.wav"]
    assert benchmark.samples[0].references[1] == "Heavy rain, on a roof."
    assert benchmark.samples[1].references == ["Birds sing.", "Birds chirp."]
    assert benchmark.samples[1].inputs == {"Audio": str(tmp_path / "audio" / "birds.wav")}
    assert benchmark.problems == [
        (f"{path}: line 4", f"missing audio file {tmp_path / 'audio' / 'gone.wav'}"),
        (f"{path}: line 5", "no caption"),
    ]


def test_clotho_rejects_a_table_of_another_format(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("url,caption\na.jpg,a cat\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{path}: header \\['url', 'caption'\\]; expected a Clotho"):
        read_clotho_captions(path, tmp_path)


# --- open-ended VQA ---


def vqav2_files(tmp_path: Path) -> tuple[Path, Path]:
    questions = write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", {
        "data_subtype": "val2014",
        "questions": [
            {"question_id": 420, "image_id": 42, "question": "What color is the cat?"},
            {"question_id": 421, "image_id": 42, "question": "How many cats?"},
            {"question_id": 430, "image_id": 43, "question": "Is it day?"},
            {"question_id": 440, "image_id": 44, "question": "Where?"},
        ],
    })
    answers = [{"answer": "black", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]
    annotations = write_json(tmp_path / "v2_mscoco_val2014_annotations.json", {"annotations": [
        {"question_id": 420, "image_id": 42, "answers": answers, "answer_type": "other",
         "question_type": "what color is the", "multiple_choice_answer": "black"},
        {"question_id": 421, "image_id": 42, "answers": [{"answer_id": 1}]},
        {"question_id": 440, "image_id": 44, "answers": answers},
    ]})
    return questions, annotations


def test_vqav2(tmp_path):
    touch(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    touch(tmp_path / "val2014" / "COCO_val2014_000000000043.jpg")
    questions, annotations = vqav2_files(tmp_path)
    benchmark = read_vqav2(questions, annotations, tmp_path / "val2014")
    assert benchmark.task == "vqa"
    [sample] = benchmark.samples
    assert sample.sample_id == "420" and sample.references == ["black"] * 10
    assert sample.inputs == {"Image": str(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")}
    assert sample.extra == {"image_id": 42, "question_type": "what color is the", "answer_type": "other",
                            "multiple_choice_answer": "black"}
    assert reasons(benchmark) == [
        "no 'answer'",  # the annotation of 421, read first
        "no annotation for this question",  # 421
        "no annotation for this question",  # 430
        f"missing image file {tmp_path / 'val2014' / 'COCO_val2014_000000000044.jpg'}",
    ]


def test_vqav2_test_dev_without_annotations_and_other_patterns(tmp_path):
    touch(tmp_path / "test2015" / "42.jpg")
    questions, _ = vqav2_files(tmp_path)
    benchmark = read_vqav2(questions, None, tmp_path / "test2015", image_pattern="{image_id}.jpg")
    assert [s.sample_id for s in benchmark.samples] == ["420", "421"]
    assert all(s.references == [] for s in benchmark.samples)
    with pytest.raises(ValueError, match="image_pattern '{id}.jpg' cannot be filled"):
        read_vqav2(questions, None, tmp_path, image_pattern="{id}.jpg")


def test_vqav2_rejects_swapped_files(tmp_path):
    questions, annotations = vqav2_files(tmp_path)
    with pytest.raises(BenchmarkFormatError, match=f"{annotations}: no list under 'questions'.*VQAv2 questions"):
        read_vqav2(annotations, questions, tmp_path)
    with pytest.raises(BenchmarkFormatError, match=f"{questions}: no list under 'annotations'"):
        read_vqav2(questions, questions, tmp_path)


def test_textvqa(tmp_path):
    touch(tmp_path / "train_images" / "0054c91397f2fe05.jpg")
    answers = ["nokia"] * 9 + ["nokia phone"]
    path = write_json(tmp_path / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": [
        {"question_id": 34602, "image_id": "0054c91397f2fe05", "question": "what brand?", "answers": answers},
        {"question_id": 34603, "image_id": "0054c91397f2fe05", "question": "what is written?", "answers": "nokia"},
    ]})
    benchmark = read_textvqa(path, tmp_path / "train_images")
    [sample] = benchmark.samples
    assert (sample.sample_id, sample.references) == ("34602", answers)
    assert sample.inputs == {"Image": str(tmp_path / "train_images" / "0054c91397f2fe05.jpg")}
    assert benchmark.problems == [(f"{path}: question_id 34603", "'answers' is not a list of strings")]
    with pytest.raises(BenchmarkFormatError, match=f"{path}: no list under 'questions'"):
        read_vqav2(path, None, tmp_path)


# --- multiple choice ---


def test_scienceqa(tmp_path):
    touch(tmp_path / "images" / "test" / "5" / "image.png")
    path = write_json(tmp_path / "problems.json", {
        "5": {"question": "Which is a mammal?", "choices": ["shark", "whale"], "answer": 1, "image": "image.png",
              "hint": "Look at the picture.", "subject": "natural science", "split": "test"},
        "6": {"question": "Which word rhymes?", "choices": ["cat", "dog", "hat"], "answer": 0, "image": None,
              "hint": "", "split": "test"},
        "7": {"question": "Bad?", "choices": ["a", "b"], "answer": 2, "image": None, "split": "test"},
        "8": {"question": "Train only", "choices": ["a", "b"], "answer": 0, "image": None, "split": "train"},
        "9": {"question": "Where is it?", "choices": ["x", "y"], "answer": 0, "image": "image.png", "split": "test"},
    })
    for image_dir in (tmp_path / "images" / "test", tmp_path / "images"):  # both layouts find the image
        benchmark = read_scienceqa(path, image_dir)
        assert benchmark.task == "choice" and benchmark.name == "scienceqa_test"
        first, second = benchmark.samples
        assert first.inputs == {"Image": str(tmp_path / "images" / "test" / "5" / "image.png")}
        assert (first.choices, first.references) == (["shark", "whale"], ["whale"])
        assert first.extra["answer_index"] == 1 and first.extra["has_image"] is True
        assert first.extra["hint"] == "Look at the picture." and first.extra["subject"] == "natural science"
        assert (second.sample_id, second.inputs, second.extra["has_image"]) == ("6", {}, False)
        assert [where for where, _ in benchmark.problems] == [f"{path}: id 7", f"{path}: id 9"]
        assert reasons(benchmark)[0] == "'answer' 2 is not an index into the 2 choices"
        assert reasons(benchmark)[1].startswith("missing image file")


def test_scienceqa_rejects_other_formats(tmp_path):
    path = write_json(tmp_path / "problems.json", {"5": {"question": "q", "split": "train"}})
    with pytest.raises(BenchmarkFormatError, match=f"{path}: no problem in split 'test'"):
        read_scienceqa(path, tmp_path)
    listed = write_json(tmp_path / "llava.json", [{"id": "5", "conversations": []}])
    with pytest.raises(BenchmarkFormatError, match=f"{listed}: not an object of problems by id"):
        read_scienceqa(listed, tmp_path)


# --- yes/no ---


def test_pope(tmp_path):
    touch(tmp_path / "val2014" / "COCO_val2014_000000310196.jpg")
    path = tmp_path / "coco_pope_adversarial.json"
    lines = [
        {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
         "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dog in the image?",
         "label": "No"},
        {"question_id": 3, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a cat?", "label": "maybe"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n\n", encoding="utf-8")
    benchmark = read_pope(path, tmp_path / "val2014")
    assert benchmark.name == "coco_pope_adversarial" and benchmark.task == "yes_no"
    assert [(s.sample_id, s.references) for s in benchmark.samples] == [("1", ["yes"]), ("2", ["no"])]
    assert benchmark.samples[0].question == "Is there a snowboard in the image?"
    assert [where for where, _ in benchmark.problems] == [f"{path}: line 3", f"{path}: line 4"]
    assert reasons(benchmark)[0] == "'label' is 'maybe', not yes or no"


def test_pope_rejects_other_formats(tmp_path):
    array = write_json(tmp_path / "questions.json", [{"question_id": 1, "image": "a.jpg", "text": "q", "label": "yes"}])
    with pytest.raises(BenchmarkFormatError, match=f"{array}: line 1: a list, not a JSON object; expected POPE"):
        read_pope(array, tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text('{"instruction": "x", "output": "y"}\n', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{other}: no line is a POPE record"):
        read_pope(other, tmp_path)


def test_pope_with_every_image_missing_is_problems_not_a_format_error(tmp_path):
    path = tmp_path / "pope.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "q?", "label": "yes"}\n', encoding="utf-8")
    benchmark = read_pope(path, tmp_path / "nowhere")
    assert benchmark.samples == [] and reasons(benchmark) == [f"missing image file {tmp_path / 'nowhere' / 'a.jpg'}"]


def test_mme(tmp_path):
    release = tmp_path / "MME_Benchmark_release_version"
    touch(release / "existence" / "000000006040.jpg")  # images beside the question files
    touch(release / "artwork" / "images" / "10002.jpg")  # images in images/
    answers = tmp_path / "eval_tool" / "Your_Results"
    answers.mkdir(parents=True)
    (answers / "existence.txt").write_text(
        "000000006040.jpg\tIs there a train in this image?\tYes\n"
        "000000006040.jpg\tIs there a bed in this image?\tNo\n"
        "000000006041.jpg\tIs there a car?\tYes\n",
        encoding="utf-8",
    )
    (answers / "artwork.txt").write_text(
        "10002.jpg\tIs this artwork created by Tiziano?\tYes\tYes, it is.\n"
        "10002.jpg\tIs this artwork created by Monet?\tNo\n"
        "10002.jpg only two fields\tNo\n",
        encoding="utf-8",
    )
    benchmark = read_mme(answers, release)
    assert benchmark.task == "yes_no"
    assert [s.sample_id for s in benchmark.samples] == [
        "artwork/10002.jpg/0", "artwork/10002.jpg/1", "existence/000000006040.jpg/0", "existence/000000006040.jpg/1",
    ]
    art, _, exist, _ = benchmark.samples
    assert art.inputs == {"Image": str(release / "artwork" / "images" / "10002.jpg")}
    assert (art.references, art.extra) == (["yes"], {"task": "artwork", "image": "10002.jpg"})
    assert exist.inputs == {"Image": str(release / "existence" / "000000006040.jpg")}
    assert benchmark.problems == [
        (f"{answers / 'artwork.txt'}: line 3", "2 tab-separated fields, not 3 (image, question, Yes/No)"),
        (f"{answers / 'existence.txt'}: line 3",
         f"missing image file {release / 'existence' / '000000006041.jpg'}"),
    ]


def test_mme_rejects_other_formats(tmp_path):
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "count.txt").write_text("image,question,answer\na.jpg,How many?,2\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{answers / 'count.txt'}: no line is an MME question"):
        read_mme(answers, tmp_path)
    with pytest.raises(BenchmarkFormatError, match=f"{tmp_path}: no <task>.txt file"):
        read_mme(tmp_path, tmp_path)


def test_benchmark_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="task 'ranking' is not one of"):
        Benchmark(name="x", task="ranking", samples=[])
