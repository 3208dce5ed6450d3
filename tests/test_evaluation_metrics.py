"""Evaluation metrics: captioning as pycocoevalcap scores it, VQA accuracy, choices and yes/no."""

from __future__ import annotations

import itertools

import pytest

from evaluation.caption_metrics import METRICS, CaptionScorer, JavaNotFoundError, ptb_tokenize
from evaluation.choice_metrics import (
    choice_accuracy,
    mme_scores,
    mme_totals,
    parse_choice,
    parse_yes_no,
    yes_no_scores,
)
from evaluation.vqa_metrics import mean_vqa_accuracy, normalize_answer, vqa_accuracy

# Predictions and references with what the PTB tokenizer must handle: case, punctuation, an id
# with one reference, an id with several, a prediction sharing no word with its references.
PREDICTIONS = {
    "1": ["A man riding a horse on the beach."],
    "2": ["Two dogs, playing in snow!"],
    "3": ["a plate of food"],
    "4": ["A red circle"],
}
REFERENCES = {
    "1": ["A man rides a brown horse along the beach.", "Someone riding a horse by the sea.", "A horse and rider."],
    "2": ["Two dogs play in the snow."],
    "3": ["A bowl of soup on a wooden table.", "Soup in a bowl."],
    "4": ["A red circle.", "a red circle on white"],
}


# --- captioning ---


@pytest.fixture(scope="module")
def meteor():
    """One METEOR process for the module: it loads its paraphrase tables in about 10 s. (tests/run.sh
    installs Java where it is missing: these tests never skip.)"""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def test_caption_scores_equal_pycocoevalcap_scorers_called_directly(meteor):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    scores = CaptionScorer(meteor=meteor).score(PREDICTIONS, REFERENCES)

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({key: [{"caption": text} for text in texts] for key, texts in REFERENCES.items()})
    res = tokenizer.tokenize({key: [{"caption": text} for text in texts] for key, texts in PREDICTIONS.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {f"Bleu_{n}": value for n, value in enumerate(bleu, start=1)}
    expected["METEOR"] = meteor.compute_score(gts, res)[0]
    expected["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    expected["CIDEr"] = Cider().compute_score(gts, res)[0]

    assert tuple(scores) == METRICS
    assert all(type(value) is float for value in scores.values())
    assert scores == pytest.approx(expected, rel=1e-12, abs=0)
    # The inputs score somewhere in between, so a mix-up of ids or of sides would show.
    assert 0.2 < scores["Bleu_1"] < 0.95 and 0.05 < scores["METEOR"] < 0.9 and 0.1 < scores["CIDEr"] < 5


def test_caption_scores_of_exact_predictions_are_perfect(meteor):
    references = {key: texts[:1] for key, texts in REFERENCES.items()}
    scores = CaptionScorer(meteor=meteor).score(references, references)
    assert scores["Bleu_1"] == pytest.approx(1.0) and scores["Bleu_4"] == pytest.approx(1.0)
    assert scores["ROUGE_L"] == pytest.approx(1.0)


def test_ptb_tokenize_lowercases_drops_punctuation_and_keeps_line_breaks_inside_one_caption():
    tokens = ptb_tokenize({"a": ["A man, riding.", "two\nlines\r\u2028here"], "b": ["Next one!"]})
    assert tokens == {"a": ["a man riding", "two lines here"], "b": ["next one"]}


def test_caption_scores_reject_mismatched_inputs(meteor):
    scorer = CaptionScorer(meteor=meteor)
    with pytest.raises(ValueError, match="1 ids without a prediction"):
        scorer.score({"1": ["a"]}, {"1": ["a"], "2": ["b"]})
    with pytest.raises(ValueError, match="id '1': give a list of exactly one prediction"):
        scorer.score({"1": ["a", "b"]}, {"1": ["a"]})
    with pytest.raises(ValueError, match="id '1': give a non-empty list of reference"):
        scorer.score({"1": ["a"]}, {"1": []})


def test_caption_scores_without_java_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java anywhere on PATH
    with pytest.raises(JavaNotFoundError, match="apt-get install -y default-jre-headless"):
        CaptionScorer()


# --- VQA ---


@pytest.mark.parametrize(
    "answer, normalized",
    [
        # The examples of visualqa.org/evaluation.html:
        ("dont", "don't"),  # a contraction's missing apostrophe is added
        ("girl's", "girl's"),  # apostrophes stay: possessives are not plurals
        ("2:20 pm", "2:20 pm"),  # colons stay: times
        ("100,978", "100978"),  # a comma between digits goes without a space
        # The other rules:
        ("Yes", "yes"),
        ("Two", "2"),
        ("ten", "10"),
        ("none", "0"),
        ("the red one", "red 1"),
        ("An apple", "apple"),
        ("3.5", "3.5"),  # a decimal point stays
        ("a dog.", "dog"),  # other periods go
        ("red-white", "red white"),
        ("red,white", "red white"),
        ("(yes)!", "yes"),
        ("  many   spaces\n", "many spaces"),
        ("its", "its"),  # real words are not contractions
        ("well", "well"),
        ("isnt", "isn't"),
    ],
)
def test_vqa_normalization(answer, normalized):
    assert normalize_answer(answer) == normalized


@pytest.mark.parametrize(
    "matches, accuracy",
    [
        # Leave-one-out over 10 annotators, min(1, matches in the 9 / 3), averaged:
        (0, 0.0),
        (1, 0.3),  # 1 subset without the match: 0; 9 subsets: 1/3 -> 9/3/10 = 0.3
        (2, 0.6),  # 2 subsets see 1 match: 1/3; 8 see 2: 2/3 -> (2/3 + 16/3) / 10 = 0.6
        (3, 0.9),  # 3 subsets see 2: 2/3; 7 see 3: 1 -> (2 + 7) / 10 = 0.9
        (4, 1.0),  # every subset sees at least 3
        (10, 1.0),
    ],
)
def test_vqa_accuracy_of_k_matching_annotators_of_10(matches, accuracy):
    answers = ["cat"] * matches + ["dog", "cow", "bird"] * 4
    assert vqa_accuracy("cat", answers[:10]) == pytest.approx(accuracy)


def test_vqa_accuracy_equals_brute_force_leave_one_out():
    answers = ["2", "two", "2", "3", "Three", "4", "2.", "many", "3", "four"]
    for prediction in ("2", "3", "4", "many", "5"):
        predicted = normalize_answer(prediction)
        subsets = list(itertools.combinations(range(10), 9))
        expected = sum(
            min(1.0, sum(normalize_answer(answers[i]) == predicted for i in subset) / 3) for subset in subsets
        ) / len(subsets)
        assert vqa_accuracy(prediction, answers) == pytest.approx(expected)
    # "2", "two", "2", "2." are all "2": four annotators.
    assert vqa_accuracy("Two.", answers) == 1.0


def test_mean_vqa_accuracy_and_its_checks():
    references = {"q1": ["yes"] * 10, "q2": ["2", "2"] + ["3"] * 8}
    assert mean_vqa_accuracy({"q1": "Yes", "q2": "two"}, references) == pytest.approx((1.0 + 0.6) / 2)
    with pytest.raises(ValueError, match="1 ids without a prediction"):
        mean_vqa_accuracy({"q1": "yes"}, references)
    with pytest.raises(ValueError, match="annotators' answers"):
        vqa_accuracy("yes", ["yes"])


# --- multiple choice ---

CHOICES = ["red", "red and blue", "green"]


@pytest.mark.parametrize(
    "answer, index",
    [
        ("B", 1),
        ("b", 1),
        ("(B)", 1),
        ("B.", 1),
        ("The answer is B.", 1),
        ("The answer is (c).", 2),
        ("Answer: C", 2),
        ("B. red and blue", 1),
        ("(A) red", 0),
        ("I would pick (C) here.", 2),
        ("green", 2),
        ("It is green.", 2),
        ("red and blue", 1),  # "red" is part of it: the longer option wins
        ("Red!", 0),
        ("The answer is D.", None),  # no option D
        ("red or green", None),  # two options
        ("I don't know.", None),
    ],
)
def test_parse_choice(answer, index):
    assert parse_choice(answer, CHOICES) == index


def test_parse_choice_is_not_fooled_by_the_article_a():
    assert parse_choice("The answer is a dog.", ["cat", "dog"]) == 1
    assert parse_choice("A dog.", ["cat", "dog"]) == 1


def test_choice_accuracy_counts_unparsed_as_wrong():
    score = choice_accuracy({"1": 1, "2": None, "3": 0}, {"1": 1, "2": 0, "3": 2})
    assert (score.correct, score.total, score.unparsed) == (1, 3, 1)
    assert score.accuracy == pytest.approx(1 / 3)


# --- yes/no ---


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes", "yes"),
        ("Yes, it is.", "yes"),
        ("yes.", "yes"),
        ("No.", "no"),
        ("No, there is no dog.", "no"),
        ("There is no dog in the image.", "no"),
        ("The cat is not black.", "no"),
        ("I don't see a dog.", "no"),
        ("Sure, yes.", "yes"),
        ("There is a dog in the image.", None),  # neither: not guessed
        ("Yes and no.", "yes"),  # the first word decides
        ("Maybe yes, maybe not.", None),  # both
        ("", None),
    ],
)
def test_parse_yes_no(answer, parsed):
    assert parse_yes_no(answer) == parsed


def test_yes_no_scores_by_hand():
    labels = {"1": "yes", "2": "yes", "3": "no", "4": "no", "5": "yes"}
    predicted = {"1": "yes", "2": "no", "3": "yes", "4": "no", "5": None}
    score = yes_no_scores(predicted, labels)
    # right: 1 (yes) and 4 (no) -> 2/5; said yes: 1, 3 -> precision 1/2; true yes: 1 of 3 -> recall 1/3
    assert score.accuracy == pytest.approx(0.4)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(1 / 3)
    assert score.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # 0.4
    assert score.yes_ratio == pytest.approx(0.4)
    assert (score.total, score.unparsed) == (5, 1)


def test_mme_accuracy_plus_needs_both_questions_of_an_image():
    task_image = {
        "c1a": ("count", "1.jpg"), "c1b": ("count", "1.jpg"),  # both right
        "c2a": ("count", "2.jpg"), "c2b": ("count", "2.jpg"),  # one right
        "c3a": ("count", "3.jpg"), "c3b": ("count", "3.jpg"),  # none right
        "o1a": ("OCR", "x.jpg"), "o1b": ("OCR", "x.jpg"),
        "t1a": ("text_translation", "t.png"), "t1b": ("text_translation", "t.png"),
    }
    labels = {"c1a": "yes", "c1b": "no", "c2a": "yes", "c2b": "no", "c3a": "yes", "c3b": "no",
              "o1a": "yes", "o1b": "no", "t1a": "yes", "t1b": "no"}
    predicted = {"c1a": "yes", "c1b": "no", "c2a": "yes", "c2b": "yes", "c3a": None, "c3b": "yes",
                 "o1a": "yes", "o1b": "no", "t1a": "no", "t1b": "no"}
    scores = mme_scores(predicted, labels, task_image)
    count = scores["count"]
    assert (count.questions, count.images) == (6, 3)
    assert count.accuracy == pytest.approx(3 / 6)
    assert count.accuracy_plus == pytest.approx(1 / 3)
    assert count.score == pytest.approx((0.5 + 1 / 3) * 100)
    assert scores["OCR"].score == pytest.approx(200.0)
    assert scores["text_translation"].score == pytest.approx(50.0)  # acc 1/2, acc+ 0
    totals = mme_totals(scores)
    assert totals["perception"] == pytest.approx((0.5 + 1 / 3) * 100 + 200)
    assert totals["cognition"] == pytest.approx(50.0)
