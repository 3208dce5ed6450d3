"""Open-ended VQA accuracy: answers normalised, then scored against ten annotators.

Written for this project from the rules the VQA authors document for their evaluation
(https://visualqa.org/evaluation.html), applied to the prediction and to every annotator's answer:

1. lower case (and line breaks or tabs as spaces);
2. punctuation other than the apostrophe, the colon and the period becomes a space: apostrophes
   stay because dropping them turns possessives into plurals ("girl's"), colons because they
   write times ("2:20 pm"); a comma between two digits is removed instead ("100,978" -> "100978");
3. periods are removed, except a decimal point (a period before a digit: "3.5", ".5");
4. number words become digits ("two" -> "2"), for zero to ten as the official script does, and
   "none" -> "0" likewise (the page says "number words"; the script's list stops at ten);
5. the articles "a", "an", "the" are removed;
6. a contraction written without its apostrophe gets it back ("dont" -> "don't"), for the
   contractions in `CONTRACTIONS` whose apostrophe-less spelling is not itself a word ("its",
   "well", "were", "ill", "id", "shell", "hell", "lets", "wed", "shed" are left alone).

Accuracy is the page's: an answer that at least 3 annotators gave is fully right, one that fewer
gave is partly right (min(1, humans / 3)), averaged over the 10 subsets of 9 annotators that
leave one out, "to be consistent with human accuracy". So 4 or more matching annotators of 10
give 1.0; 3 give 0.9 (the 3 subsets that drop a match see 2 -> 2/3, the other 7 see 3 -> 1);
2 give 0.6; 1 gives 0.3. With n annotators the n leave-one-out subsets are used.

Where the official script differs from its page, the page is followed here: the script's
punctuation list is shorter ("$", "%", "&", "*", "#", "|", "~", "^" are kept, so "50%" and "50"
differ there and match here), and it removes a punctuation mark outright instead of spacing it
when the mark touches a space or the text has a digit-comma-digit; after spaces are collapsed
the two agree except in such mixed answers ("red-white, 1,000").
"""

from __future__ import annotations

import re
import string
from typing import Mapping, Sequence

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}

CONTRACTIONS = (
    "ain't", "aren't", "can't", "couldn't", "could've", "couldn't've", "didn't", "doesn't", "don't",
    "hadn't", "hasn't", "haven't", "he'd", "he'll", "he's", "how'd", "how'll", "how's", "i'd've",
    "i'm", "i've", "isn't", "it'd", "it'll", "let's", "ma'am", "mightn't", "might've", "mustn't",
    "must've", "needn't", "o'clock", "shan't", "she'd", "she'll", "she's", "shouldn't",
    "should've", "shouldn't've", "somebody's", "someone's", "something's", "that's", "there's",
    "there'd", "there'll", "they'd", "they'll", "they're", "they've", "wasn't", "we'd", "we'll",
    "we're", "we've", "weren't", "what'll", "what're", "what's", "what've", "when's", "where'd",
    "where's", "where've", "who'd", "who'll", "who's", "who've", "why'll", "why're", "why's",
    "won't", "wouldn't", "would've", "wouldn't've", "y'all", "you'd", "you'll", "you're", "you've",
)
# Apostrophe-less spellings that are common English words in their own right: never "fixed".
# ("cant" and "wont" are words too, but rare ones: in an answer they mean can't and won't.)
_REAL_WORDS = {"its", "well", "were", "ill", "id", "shell", "hell", "lets", "wed", "shed"}
_MISSING_APOSTROPHE = {
    contraction.replace("'", ""): contraction
    for contraction in CONTRACTIONS if contraction.replace("'", "") not in _REAL_WORDS
}

_SPACED_PUNCTUATION = "".join(mark for mark in string.punctuation if mark not in "':.")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
_PUNCTUATION = re.compile(f"[{re.escape(_SPACED_PUNCTUATION)}]")
_NON_DECIMAL_PERIOD = re.compile(r"\.(?!\d)")


def normalize_answer(answer: str) -> str:
    """The answer as the VQA evaluation compares it (rules 1-6 of the module docstring)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    text = _DIGIT_COMMA.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    text = _NON_DECIMAL_PERIOD.sub("", text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_MISSING_APOSTROPHE.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The prediction's accuracy against the annotators' answers (10 in VQAv2 and TextVQA).

    Mean over the leave-one-out subsets of min(1, matches in the subset / 3), both sides
    normalised.
    """
    if len(answers) < 2:
        raise ValueError(
            f"VQA accuracy needs the annotators' answers (10 per question in VQAv2 and TextVQA); got {len(answers)}"
        )
    predicted = normalize_answer(prediction)
    matches = sum(normalize_answer(answer) == predicted for answer in answers)
    # A subset that leaves out a matching annotator sees matches - 1 of them; the others see all.
    left_out_match = matches * min(1.0, (matches - 1) / 3)
    left_out_other = (len(answers) - matches) * min(1.0, matches / 3)
    return (left_out_match + left_out_other) / len(answers)


def vqa_accuracies(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Each question's accuracy, by id: the same ids on both sides, or a ValueError naming some."""
    missing = references.keys() - predictions.keys()
    unknown = predictions.keys() - references.keys()
    if missing or unknown:
        raise ValueError(
            f"predictions and references differ: {len(missing)} ids without a prediction "
            f"(e.g. {sorted(missing)[:3]}), {len(unknown)} without references (e.g. {sorted(unknown)[:3]})"
        )
    return {sample_id: vqa_accuracy(predictions[sample_id], references[sample_id]) for sample_id in references}


def mean_vqa_accuracy(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> float:
    """The benchmark's VQA accuracy (a fraction; the VQA papers print it times 100)."""
    scores = vqa_accuracies(predictions, references)
    if not scores:
        raise ValueError("no question to score")
    return sum(scores.values()) / len(scores)
