"""Closed answers: which option a generated answer picks, whether it says yes or no, and the scores.

A generative model does not answer "B" on cue: it says "The answer is B.", "(B) blue", or just
"blue". `parse_choice` and `parse_yes_no` read what was chosen, leniently but never by guessing:
an answer that names no option, or two, is None, and None is scored as wrong (and counted, so a
report shows how often the model did not answer the question asked). This differs from POPE's
own script, which calls every answer without "no" or "not" a yes, and agrees with MME's, which
scores an answer that is neither as wrong.

Scores:
- multiple choice (ScienceQA): accuracy;
- yes/no (POPE): accuracy, and with "yes" as the positive class precision, recall, F1, and the
  fraction of answers that are yes (near 0.5 on POPE's balanced files: far above means the model
  says yes to objects that are not there);
- MME, per task: accuracy over questions, accuracy+ over images (an image counts when all its
  questions, two in MME, are right), and the task's score (accuracy + accuracy+) * 100, out of
  200; the perception and cognition totals are the sums of their tasks' scores.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

OPTION_LETTERS = string.ascii_uppercase

# The tasks of MME's two totals, by the names of the released benchmark's folders.
MME_PERCEPTION = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


# --- reading the answer ---

_BARE_LETTER = re.compile(r"\(?([A-Za-z])\)?[.:)]?")
_STATED_LETTER = re.compile(
    r"\b(?i:answer|option|choice)\s*(?:is|:)?\s*(?i:option\s+|choice\s+)?(?:\(([A-Za-z])\)|([A-Z])(?![A-Za-z]))"
)
_LEADING_LETTER = re.compile(r"\(?([A-Z])[).:]")
_BRACKETED_LETTER = re.compile(r"\(([A-Za-z])\)")
_NON_WORD = re.compile(r"[^\w']+")


def parse_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The index of the option `answer` picks, or None when it picks none or several.

    Tried in order, the first that names exactly one valid option wins: the answer is a letter
    ("B", "(B)", "b."); it states one ("The answer is B.", "answer: (b)"); it starts with one
    ("B. blue", "(B) blue"); it brackets one letter ("I pick (B) here"); its words are an
    option's text, or contain exactly one option's text (an option that is part of another
    found option, "red" in "red and blue", gives way to the longer one).
    """
    letters = OPTION_LETTERS[: len(choices)]
    text = answer.strip()

    def index_of(found: set[str]) -> int | None:
        named = {letter.upper() for letter in found}
        return letters.index(named.pop()) if len(named) == 1 and named <= set(letters) else None

    bare = _BARE_LETTER.fullmatch(text)
    for found in (
        {bare.group(1)} if bare else set(),
        {a or b for a, b in _STATED_LETTER.findall(text)},
        {match.group(1)} if (match := _LEADING_LETTER.match(text)) else set(),
        set(_BRACKETED_LETTER.findall(text)),
    ):
        if found and (index := index_of(found)) is not None:
            return index
    return _option_by_text(text, choices)


def _words(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _option_by_text(text: str, choices: Sequence[str]) -> int | None:
    said = _words(text)
    options = [_words(choice) for choice in choices]
    exact = [index for index, option in enumerate(options) if option and option == said]
    if len(exact) == 1:
        return exact[0]
    padded = f" {said} "
    found = [index for index, option in enumerate(options) if option and f" {option} " in padded]
    longest = [
        index for index in found
        if not any(other != index and f" {options[index]} " in f" {options[other]} " for other in found)
    ]
    return longest[0] if len(longest) == 1 else None


_YES = {"yes", "yeah", "yep", "true", "correct"}
_NO = {"no", "not", "nope", "false", "incorrect", "cannot", "neither", "nor", "none", "nothing"}


def parse_yes_no(answer: str) -> str | None:
    """"yes", "no", or None when the answer says neither or both.

    The first word decides when it is a yes or a no ("Yes, it is." "No, there is no dog.");
    otherwise the answer is a yes if it has a yes word and no negation, a no if it has a negation
    ("not", "no", any "n't") and no yes word.
    """
    words = re.findall(r"[a-z']+", answer.lower())
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO or words[0].endswith("n't"):
        return "no"
    says_yes = any(word in _YES for word in words)
    says_no = any(word in _NO or word.endswith("n't") for word in words)
    if says_yes != says_no:
        return "yes" if says_yes else "no"
    return None


# --- scores ---


def _check_same_ids(predicted: Mapping[str, object], truth: Mapping[str, object]) -> None:
    missing, unknown = truth.keys() - predicted.keys(), predicted.keys() - truth.keys()
    if missing or unknown:
        raise ValueError(
            f"predictions and answers differ: {len(missing)} ids without a prediction "
            f"(e.g. {sorted(missing)[:3]}), {len(unknown)} without an answer (e.g. {sorted(unknown)[:3]})"
        )
    if not truth:
        raise ValueError("no question to score")


@dataclass(frozen=True)
class ChoiceScore:
    accuracy: float
    correct: int
    total: int
    unparsed: int
    """Answers that picked no option (scored wrong)."""


def choice_accuracy(predicted: Mapping[str, int | None], answers: Mapping[str, int]) -> ChoiceScore:
    """Multiple-choice accuracy of parsed choices (`parse_choice`) against the right indices."""
    _check_same_ids(predicted, answers)
    correct = sum(predicted[key] == answers[key] for key in answers)
    unparsed = sum(predicted[key] is None for key in answers)
    return ChoiceScore(accuracy=correct / len(answers), correct=correct, total=len(answers), unparsed=unparsed)


@dataclass(frozen=True)
class YesNoScore:
    accuracy: float
    precision: float
    """Of the answers that said yes, the fraction right ("yes" is POPE's positive class)."""
    recall: float
    """Of the questions whose answer is yes, the fraction answered yes."""
    f1: float
    yes_ratio: float
    """The fraction of all answers that said yes."""
    total: int
    unparsed: int
    """Answers that said neither (scored wrong: a no when the truth is yes, never a yes)."""


def yes_no_scores(predicted: Mapping[str, str | None], labels: Mapping[str, str]) -> YesNoScore:
    """POPE's metrics of parsed answers (`parse_yes_no`: "yes", "no" or None) against "yes"/"no" labels."""
    _check_same_ids(predicted, labels)
    true_yes = sum(predicted[key] == "yes" and labels[key] == "yes" for key in labels)
    said_yes = sum(predicted[key] == "yes" for key in labels)
    are_yes = sum(labels[key] == "yes" for key in labels)
    correct = sum(predicted[key] == labels[key] for key in labels)
    precision = true_yes / said_yes if said_yes else 0.0
    recall = true_yes / are_yes if are_yes else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return YesNoScore(
        accuracy=correct / len(labels), precision=precision, recall=recall, f1=f1,
        yes_ratio=said_yes / len(labels), total=len(labels),
        unparsed=sum(predicted[key] is None for key in labels),
    )


@dataclass(frozen=True)
class MMETaskScore:
    accuracy: float
    accuracy_plus: float
    """The fraction of images whose questions are all right."""
    score: float
    """(accuracy + accuracy_plus) * 100: MME's score of the task, out of 200."""
    questions: int
    images: int


def mme_scores(
    predicted: Mapping[str, str | None], labels: Mapping[str, str], task_image: Mapping[str, tuple[str, str]],
) -> dict[str, MMETaskScore]:
    """Each MME task's score; `task_image` gives each question's (task, image) (benchmarks' extra)."""
    _check_same_ids(predicted, labels)
    questions: dict[str, list[bool]] = defaultdict(list)
    images: dict[str, dict[str, bool]] = defaultdict(dict)
    for key, label in labels.items():
        if key not in task_image:
            raise ValueError(f"question {key!r} has no (task, image) in task_image")
        task, image = task_image[key]
        right = predicted[key] == label
        questions[task].append(right)
        images[task][image] = images[task].get(image, True) and right
    scores = {}
    for task, answers in questions.items():
        accuracy = sum(answers) / len(answers)
        accuracy_plus = sum(images[task].values()) / len(images[task])
        scores[task] = MMETaskScore(
            accuracy=accuracy, accuracy_plus=accuracy_plus, score=(accuracy + accuracy_plus) * 100,
            questions=len(answers), images=len(images[task]),
        )
    return scores


def mme_totals(scores: Mapping[str, MMETaskScore]) -> dict[str, float]:
    """MME's perception and cognition totals: the sums of their tasks' scores (tasks absent add 0)."""
    return {
        "perception": sum(scores[task].score for task in MME_PERCEPTION if task in scores),
        "cognition": sum(scores[task].score for task in MME_COGNITION if task in scores),
    }
