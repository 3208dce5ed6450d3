"""Benchmark files, in the layouts their authors publish, read into one list of samples.

Every reader returns a `Benchmark`: its samples (`EvalSample`: the input files by modality name,
the question, the reference answers) and its `problems`. Real benchmark folders are messy (an
image missing from a partial download, a record without its answers), and one bad record must
neither stop an evaluation nor vanish silently: it is left out and listed in `problems` as
(where, reason), so a report can say "4,998 of 5,000 scored, 2 images missing". A file that is
not the format asked for (a questions file passed as annotations, a CSV where JSON belongs) is
a `BenchmarkFormatError` naming the file and what was expected: that is a wrong path, not messy
data, and every score computed from it would be meaningless.

    captioning   read_coco_captions    COCO-style annotation JSON (COCO captions, NoCaps)
                 read_karpathy_split   dataset_coco.json / dataset_flickr30k.json, one split
                 read_clotho_captions  Clotho's CSV: file_name, caption_1..caption_5 (audio)
    open VQA     read_vqav2            VQAv2 questions JSON + annotations JSON
                 read_textvqa          TextVQA JSON (10 answers per question)
    choice       read_scienceqa        ScienceQA problems.json, images in a folder per id
    yes/no       read_pope             POPE jsonl
                 read_mme              MME's per-task answer files (image, question, Yes/No)

Input paths are not opened here (reading them is data/'s job), only checked to exist.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from model.tokenizer import CAPTION_INSTRUCTION

TASKS = ("caption", "vqa", "choice", "yes_no")


class BenchmarkFormatError(ValueError):
    """A benchmark file that is not the format its reader expects (named in the message)."""


@dataclass(frozen=True)
class EvalSample:
    """One question to put to the model and what counts as a right answer.

    For multiple choice, `references` holds the right option's text and `extra["answer_index"]`
    its index in `choices`; for yes/no, `references` is ["yes"] or ["no"]. A split published
    without answers (VQAv2 test-dev, TextVQA test) gives empty `references`: the samples can be
    answered and submitted, not scored here.
    """

    sample_id: str
    inputs: dict[str, str]
    """Modality name as the model takes it ("Image", "Audio") -> file path; empty for text-only."""
    question: str
    references: list[str]
    choices: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """What the benchmark adds: question or answer type, MME task, ScienceQA hint and subject."""


@dataclass
class Benchmark:
    """The samples of one benchmark split, and the records that could not become samples."""

    name: str
    task: str
    """One of TASKS; it says which metrics apply."""
    samples: list[EvalSample]
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(where: file and record, reason) for each record left out."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"benchmark {self.name!r}: task {self.task!r} is not one of {TASKS}")


class _BadRecord(Exception):
    """One record cannot become a sample; the reader lists it in `problems` and goes on."""


class _Builder:
    """Collects samples and problems; refuses duplicate ids and inputs whose file is missing."""

    def __init__(self, name: str, task: str) -> None:
        self.benchmark = Benchmark(name=name, task=task, samples=[])
        self._ids: set[str] = set()
        self._exists: dict[str, bool] = {}  # one stat per file, however many questions share it

    def problem(self, where: str, reason: str) -> None:
        self.benchmark.problems.append((where, reason))

    def add(self, where: str, sample: EvalSample) -> None:
        if sample.sample_id in self._ids:
            self.problem(where, f"duplicate id {sample.sample_id!r}: the first one is kept")
            return
        for modality, path in sample.inputs.items():
            if path not in self._exists:
                self._exists[path] = Path(path).is_file()
            if not self._exists[path]:
                self.problem(where, f"missing {modality.lower()} file {path}")
                return
        self._ids.add(sample.sample_id)
        self.benchmark.samples.append(sample)


# --- reading fields, each a _BadRecord naming the key when it is not what the format says ---


def _get(record: Any, key: str) -> Any:
    if not isinstance(record, dict):
        raise _BadRecord(f"a record is a {type(record).__name__}, not a JSON object")
    if key not in record:
        raise _BadRecord(f"no {key!r}")
    return record[key]


def _text(record: Any, key: str) -> str:
    value = _get(record, key)
    if not isinstance(value, str) or not value.strip():
        raise _BadRecord(f"{key!r} is {value!r}, not a non-empty string")
    return value


def _identifier(record: Any, key: str) -> str:
    """An id as text: the formats write ids as integers (COCO, VQAv2) or strings (TextVQA, POPE)."""
    value = _get(record, key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise _BadRecord(f"{key!r} is {value!r}, not an integer or a string id")
    return str(value)


def _strings(record: Any, key: str) -> list[str]:
    value = _get(record, key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _BadRecord(f"{key!r} is not a list of strings")
    return value


# --- reading whole files ---


def _load_json(path: Path, expected: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchmarkFormatError(f"{path}: not a JSON file ({error}); expected {expected}") from error


def _top_list(data: Any, path: Path, key: str, expected: str) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise BenchmarkFormatError(f"{path}: no list under {key!r} (found {found}); expected {expected}")
    return data[key]


def _records(path: Path, items: list, locate: str) -> Iterator[tuple[str, Any]]:
    """(where, record) for each record; `locate` names the id key used in `where` when present."""
    for index, record in enumerate(items):
        label = record.get(locate) if isinstance(record, dict) else None
        yield f"{path}: {locate} {label}" if label is not None else f"{path}: record {index}", record


def _check_pattern(pattern: str, **example: Any) -> None:
    """A file-name pattern fails here, before any record is read, if it names a field not given."""
    try:
        pattern.format(**example)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"image_pattern {pattern!r} cannot be filled ({type(error).__name__}: {error}); "
            f"its fields can be {sorted(example)}"
        ) from error


# --- captioning ---

COCO_CAPTIONS = 'a COCO captions file: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}'


def read_coco_captions(
    annotation_file: str | Path, image_dir: str | Path, name: str = "coco_captions",
    question: str = CAPTION_INSTRUCTION,
) -> Benchmark:
    """Every image of a COCO-style captions file with all its captions as references.

    COCO's captions_val2014.json and NoCaps' nocaps_val_4500_captions.json share this layout; the
    image record's other fields (NoCaps' "domain", sizes) are kept in `extra`. The question is the
    pre-training instruction unless another is given: the model is asked the way it learned.
    """
    path, image_dir = Path(annotation_file), Path(image_dir)
    data = _load_json(path, COCO_CAPTIONS)
    images = _top_list(data, path, "images", COCO_CAPTIONS)
    annotations = _top_list(data, path, "annotations", COCO_CAPTIONS)
    builder = _Builder(name, "caption")

    captions: dict[str, list[str]] = {}
    for where, record in _records(path, annotations, "id"):
        try:
            image_id, caption = _identifier(record, "image_id"), _text(record, "caption")
            captions.setdefault(image_id, []).append(caption)
        except _BadRecord as bad:
            builder.problem(f"{where} (annotation)", str(bad))

    if annotations and not captions:
        where, reason = builder.benchmark.problems[0]
        raise BenchmarkFormatError(
            f"{path}: no annotation has a caption ({reason} at {where}); expected {COCO_CAPTIONS}"
        )

    known: set[str] = set()
    for where, record in _records(path, images, "id"):
        try:
            image_id = _identifier(record, "id")
            file_name = _text(record, "file_name")
        except _BadRecord as bad:
            builder.problem(f"{where} (image)", str(bad))
            continue
        known.add(image_id)
        if image_id not in captions:
            builder.problem(f"{where} (image)", "no caption for this image")
            continue
        extra = {key: value for key, value in record.items() if key not in ("id", "file_name")}
        builder.add(where, EvalSample(
            sample_id=image_id, inputs={"Image": str(image_dir / file_name)}, question=question,
            references=captions[image_id], extra=extra,
        ))
    for image_id in captions.keys() - known:
        builder.problem(f"{path}: image_id {image_id}", "captions for an image not in 'images'")
    return builder.benchmark


KARPATHY = 'a Karpathy split file: {"images": [{"filename", "split", "sentences": [{"raw"}], "imgid"}]}'


def read_karpathy_split(
    split_file: str | Path, image_dir: str | Path, split: str = "test", name: str | None = None,
    question: str = CAPTION_INSTRUCTION,
) -> Benchmark:
    """The images of one split ("train", "val", "test", "restval") of a Karpathy split file.

    The image is `image_dir/filepath/filename` when the record has a "filepath" (COCO's
    "val2014"), else `image_dir/filename` (Flickr30k). The id is "cocoid" when present, so COCO
    results can be matched with COCO's own ids, else "imgid".
    """
    path, image_dir = Path(split_file), Path(image_dir)
    data = _load_json(path, KARPATHY)
    images = _top_list(data, path, "images", KARPATHY)
    name = name or f"{data.get('dataset', path.stem)}_karpathy_{split}"
    builder = _Builder(name, "caption")
    splits_seen: set[str] = set()
    for where, record in _records(path, images, "imgid"):
        try:
            record_split = _text(record, "split")
            splits_seen.add(record_split)
            if record_split != split:
                continue
            id_key = "cocoid" if isinstance(record, dict) and "cocoid" in record else "imgid"
            image_id = _identifier(record, id_key)
            image = image_dir / _text(record, "filepath") if "filepath" in record else image_dir
            image = image / _text(record, "filename")
            sentences = _get(record, "sentences")
            if not isinstance(sentences, list):
                raise _BadRecord("'sentences' is not a list")
            references = [_text(sentence, "raw") for sentence in sentences]
            if not references:
                raise _BadRecord("'sentences' is empty")
        except _BadRecord as bad:
            builder.problem(where, str(bad))
            continue
        builder.add(where, EvalSample(
            sample_id=image_id, inputs={"Image": str(image)}, question=question, references=references,
            extra={"imgid": record.get("imgid")},
        ))
    if split not in splits_seen:
        raise BenchmarkFormatError(
            f"{path}: no image in split {split!r}; the file's splits are {sorted(splits_seen)}"
        )
    return builder.benchmark


def read_clotho_captions(
    caption_file: str | Path, audio_dir: str | Path, name: str = "clotho",
    question: str = CAPTION_INSTRUCTION,
) -> Benchmark:
    """Clotho's captions CSV (header `file_name,caption_1,...,caption_5`): sounds and their captions.

    The caption columns are every column named caption_N, so a file with fewer or more captions
    per sound reads the same; empty cells are skipped.
    """
    path, audio_dir = Path(caption_file), Path(audio_dir)
    expected = "a Clotho captions CSV with a header file_name,caption_1,...,caption_5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    builder = _Builder(name, "caption")
    # utf-8-sig: a byte-order mark would otherwise glue itself to the first column's name.
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        header = reader.fieldnames or []
        caption_columns = [column for column in header if column.startswith("caption_")]
        if "file_name" not in header or not caption_columns:
            raise BenchmarkFormatError(f"{path}: header {header[:8]}; expected {expected}")
        try:
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                file_name = (row.get("file_name") or "").strip()
                if None in row:  # csv's key for cells beyond the header
                    builder.problem(where, f"{len(header) + len(row[None])} cells under a {len(header)}-column header")
                    continue
                references = [row[column].strip() for column in caption_columns if (row[column] or "").strip()]
                if not file_name or not references:
                    builder.problem(where, "no file_name" if not file_name else "no caption")
                    continue
                builder.add(where, EvalSample(
                    sample_id=file_name, inputs={"Audio": str(audio_dir / file_name)}, question=question,
                    references=references,
                ))
        except (csv.Error, UnicodeDecodeError) as error:
            raise BenchmarkFormatError(f"{path}: {error}; expected {expected}") from error
    return builder.benchmark


# --- open-ended VQA ---

VQAV2_QUESTIONS = 'VQAv2 questions: {"questions": [{"question_id", "image_id", "question"}]}'
VQAV2_ANNOTATIONS = 'VQAv2 annotations: {"annotations": [{"question_id", "answers": [{"answer"}]}]}'
VQAV2_IMAGE_PATTERN = "COCO_{subtype}_{image_id:012d}.jpg"
_VQAV2_TYPES = ("question_type", "answer_type", "multiple_choice_answer")  # what results are reported by


def read_vqav2(
    questions_file: str | Path, annotations_file: str | Path | None, image_dir: str | Path,
    image_pattern: str = VQAV2_IMAGE_PATTERN, name: str = "vqav2",
) -> Benchmark:
    """VQAv2's questions with the annotators' ten answers each as references.

    The image file name comes from `image_pattern`, formatted with the integer `image_id` and
    `subtype`, the questions file's "data_subtype" ("val2014"): COCO's
    COCO_val2014_000000262148.jpg by default. Without an annotations file (test-dev), the
    references are empty. `extra` keeps the image id and, with annotations, the question and
    answer types that VQAv2 results are reported by.
    """
    questions_path, image_dir = Path(questions_file), Path(image_dir)
    data = _load_json(questions_path, VQAV2_QUESTIONS)
    questions = _top_list(data, questions_path, "questions", VQAV2_QUESTIONS)
    subtype = data.get("data_subtype")
    if "{subtype" in image_pattern and not isinstance(subtype, str):
        raise BenchmarkFormatError(
            f"{questions_path}: no 'data_subtype' for image_pattern {image_pattern!r}; "
            "give a pattern without {subtype}, e.g. 'COCO_val2014_{image_id:012d}.jpg'"
        )
    _check_pattern(image_pattern, image_id=262148, subtype="val2014")
    builder = _Builder(name, "vqa")
    annotations = _vqav2_answers(Path(annotations_file), builder) if annotations_file is not None else None
    for where, record in _records(questions_path, questions, "question_id"):
        try:
            question_id = _identifier(record, "question_id")
            image_id = _get(record, "image_id")
            if not isinstance(image_id, int) or isinstance(image_id, bool):
                raise _BadRecord(f"'image_id' is {image_id!r}, not an integer")
            question = _text(record, "question")
            references, extra = [], {}
            if annotations is not None:
                if question_id not in annotations:
                    raise _BadRecord("no annotation for this question")
                references, extra = annotations[question_id]
        except _BadRecord as bad:
            builder.problem(where, str(bad))
            continue
        image = image_dir / image_pattern.format(image_id=image_id, subtype=subtype)
        builder.add(where, EvalSample(
            sample_id=question_id, inputs={"Image": str(image)}, question=question,
            references=references, extra={"image_id": image_id, **extra},
        ))
    return builder.benchmark


def _vqav2_answers(path: Path, builder: _Builder) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """question_id -> (the answers, the annotation's types) of a VQAv2 annotations file."""
    annotations = _top_list(_load_json(path, VQAV2_ANNOTATIONS), path, "annotations", VQAV2_ANNOTATIONS)
    answers: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for where, record in _records(path, annotations, "question_id"):
        try:
            question_id = _identifier(record, "question_id")
            given = _get(record, "answers")
            if not isinstance(given, list) or not given:
                raise _BadRecord("'answers' is not a non-empty list")
            texts = [_text(answer, "answer") for answer in given]
        except _BadRecord as bad:
            builder.problem(f"{where} (annotation)", str(bad))
            continue
        kinds = {key: record[key] for key in _VQAV2_TYPES if key in record}
        answers[question_id] = (texts, kinds)
    return answers


TEXTVQA = 'a TextVQA file: {"data": [{"question_id", "image_id", "question", "answers": [10 strings]}]}'


def read_textvqa(
    data_file: str | Path, image_dir: str | Path, image_pattern: str = "{image_id}.jpg",
    name: str = "textvqa",
) -> Benchmark:
    """TextVQA's questions (TextVQA_0.5.1_val.json) with their ten answers as references.

    Images are `image_dir/<image_id>.jpg` as TextVQA ships them (train_images/ holds train and
    val); a record without "answers" (the test split) gets empty references.
    """
    path, image_dir = Path(data_file), Path(image_dir)
    _check_pattern(image_pattern, image_id="0054c91397f2fe05")
    records = _top_list(_load_json(path, TEXTVQA), path, "data", TEXTVQA)
    builder = _Builder(name, "vqa")
    for where, record in _records(path, records, "question_id"):
        try:
            question_id = _identifier(record, "question_id")
            image_id = _identifier(record, "image_id")
            question = _text(record, "question")
            references = _strings(record, "answers") if "answers" in record else []
        except _BadRecord as bad:
            builder.problem(where, str(bad))
            continue
        builder.add(where, EvalSample(
            sample_id=question_id, inputs={"Image": str(image_dir / image_pattern.format(image_id=image_id))},
            question=question, references=references, extra={"image_id": image_id},
        ))
    return builder.benchmark


# --- multiple choice ---

SCIENCEQA = 'ScienceQA problems.json: {"<id>": {"question", "choices", "answer", "image", "split"}}'
_SCIENCEQA_EXTRA = ("hint", "subject", "topic", "category", "grade", "skill", "task", "lecture", "solution")


def read_scienceqa(
    problems_file: str | Path, image_dir: str | Path, split: str = "test", name: str | None = None,
) -> Benchmark:
    """The problems of one ScienceQA split: question, choices, the right choice's index.

    An image lies at `image_dir/<id>/<image>` (pass ScienceQA's images/test) or
    `image_dir/<split>/<id>/<image>` (pass images/); a problem without an image is text-only
    (empty `inputs`), as about half of ScienceQA is: `extra["has_image"]` tells them apart.
    The hint (ScienceQA's context) is in `extra["hint"]`.
    """
    path, image_dir = Path(problems_file), Path(image_dir)
    data = _load_json(path, SCIENCEQA)
    if not isinstance(data, dict) or not data or not all(isinstance(value, dict) for value in data.values()):
        raise BenchmarkFormatError(f"{path}: not an object of problems by id; expected {SCIENCEQA}")
    if not any(value.get("split") == split for value in data.values()):
        splits = sorted({str(value.get("split")) for value in data.values()})
        raise BenchmarkFormatError(f"{path}: no problem in split {split!r}; the file's splits are {splits}")
    builder = _Builder(name or f"scienceqa_{split}", "choice")
    for problem_id, record in data.items():
        if record.get("split") != split:
            continue
        where = f"{path}: id {problem_id}"
        try:
            question = _text(record, "question")
            choices = _strings(record, "choices")
            answer = _get(record, "answer")
            if len(choices) < 2:
                raise _BadRecord(f"{len(choices)} choices")
            if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
                raise _BadRecord(f"'answer' {answer!r} is not an index into the {len(choices)} choices")
            image = _get(record, "image")
            if image is not None and not isinstance(image, str):
                raise _BadRecord(f"'image' is {image!r}, not a file name or null")
        except _BadRecord as bad:
            builder.problem(where, str(bad))
            continue
        inputs = {"Image": _scienceqa_image(image_dir, split, problem_id, image)} if image else {}
        extra = {key: record[key] for key in _SCIENCEQA_EXTRA if key in record}
        builder.add(where, EvalSample(
            sample_id=str(problem_id), inputs=inputs, question=question, references=[choices[answer]],
            choices=choices, extra={"answer_index": answer, "has_image": bool(image), **extra},
        ))
    return builder.benchmark


def _scienceqa_image(image_dir: Path, split: str, problem_id: str, image: str) -> str:
    direct = image_dir / problem_id / image
    under_split = image_dir / split / problem_id / image
    return str(under_split if not direct.is_file() and under_split.is_file() else direct)


# --- yes/no ---

POPE = 'POPE jsonl: one {"question_id", "image", "text", "label": "yes"/"no"} per line'


def read_pope(question_file: str | Path, image_dir: str | Path, name: str | None = None) -> Benchmark:
    """A POPE question file (coco_pope_random.json and its popular, adversarial siblings).

    POPE names its files .json but writes one JSON object per line. A line that is not a POPE
    record is a problem; a file whose first line is not a JSON object is not POPE at all.
    """
    path, image_dir = Path(question_file), Path(image_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {POPE})")
    builder = _Builder(name or path.stem, "yes_no")
    with open(path, encoding="utf-8") as file:
        lines = [(number, line) for number, line in enumerate(file, start=1) if line.strip()]
    records = 0  # lines that are POPE records, their image found or not
    for number, line in lines:
        where = f"{path}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == lines[0][0]:
                raise BenchmarkFormatError(f"{where}: not a JSON object ({error}); expected {POPE}") from error
            builder.problem(where, f"not JSON: {error}")
            continue
        if number == lines[0][0] and not isinstance(record, dict):
            raise BenchmarkFormatError(f"{where}: a {type(record).__name__}, not a JSON object; expected {POPE}")
        try:
            question_id = _identifier(record, "question_id")
            image = _text(record, "image")
            question = _text(record, "text")
            label = _text(record, "label").strip().lower()
            if label not in ("yes", "no"):
                raise _BadRecord(f"'label' is {record['label']!r}, not yes or no")
        except _BadRecord as bad:
            builder.problem(where, str(bad))
            continue
        records += 1
        extra = {"category": record["category"]} if "category" in record else {}
        builder.add(where, EvalSample(
            sample_id=question_id, inputs={"Image": str(image_dir / image)}, question=question,
            references=[label], extra=extra,
        ))
    if lines and not records:
        first = builder.benchmark.problems[0]
        raise BenchmarkFormatError(f"{path}: no line is a POPE record ({first[1]} at {first[0]}); expected {POPE}")
    return builder.benchmark


MME = "an MME task file: lines 'image_name<TAB>question<TAB>Yes/No'"


def read_mme(answer_dir: str | Path, benchmark_dir: str | Path, name: str = "mme") -> Benchmark:
    """Every MME task: `answer_dir/<task>.txt` with images in `benchmark_dir/<task>/[images/]`.

    `answer_dir` is the folder of per-task files that MME's evaluation tool ships (one line per
    question: image name, question, the right Yes/No); `benchmark_dir` the released benchmark,
    a folder per task holding its images either directly or under images/. Each image has two
    questions; `extra` keeps the task and image, which MME's accuracy+ groups by.
    """
    answer_dir = Path(answer_dir)
    task_files = sorted(answer_dir.glob("*.txt"))
    if not task_files:
        raise BenchmarkFormatError(f"{answer_dir}: no <task>.txt file; expected a folder of {MME}")
    benchmark = Benchmark(name=name, task="yes_no", samples=[])
    for task_file in task_files:
        task = read_mme_task(task_file, Path(benchmark_dir) / task_file.stem)
        benchmark.samples.extend(task.samples)
        benchmark.problems.extend(task.problems)
    return benchmark


def read_mme_task(task_file: str | Path, task_dir: str | Path, task: str | None = None) -> Benchmark:
    """One MME task file; the task is named after the file ("existence.txt" -> "existence").

    A fourth column (a model's answer, which the evaluation tool has users append) is ignored.
    """
    path, task_dir = Path(task_file), Path(task_dir)
    task = task or path.stem
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {MME})")
    builder = _Builder(f"mme_{task}", "yes_no")
    images_dir = task_dir / "images" if (task_dir / "images").is_dir() else task_dir
    asked: dict[str, int] = {}
    lines = 0
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            lines += 1
            where = f"{path}: line {number}"
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) not in (3, 4):
                builder.problem(where, f"{len(fields)} tab-separated fields, not 3 (image, question, Yes/No)")
                continue
            image, question, label = (text.strip() for text in fields[:3])
            if not image or not question or label.lower() not in ("yes", "no"):
                builder.problem(where, f"not an image, a question and Yes/No: {line.strip()[:120]!r}")
                continue
            index = asked.get(image, 0)
            asked[image] = index + 1
            builder.add(where, EvalSample(
                sample_id=f"{task}/{image}/{index}", inputs={"Image": str(images_dir / image)},
                question=question, references=[label.lower()], extra={"task": task, "image": image},
            ))
    if lines and not asked:
        where, reason = builder.benchmark.problems[0]
        raise BenchmarkFormatError(f"{path}: no line is an MME question ({reason} at {where}); expected {MME}")
    return builder.benchmark
