"""Captioning scores, computed the way the COCO caption evaluation computes them.

Published captioning numbers (COCO, NoCaps, Flickr30k, Clotho) come from the COCO caption
evaluation code, packaged as `pycocoevalcap`: captions lower-cased and split by the Stanford PTB
tokenizer with punctuation dropped, then BLEU-1..4 (closest reference length), METEOR 1.5,
ROUGE-L and CIDEr (the package's CIDEr is the CIDEr-D variant, clipped counts and a length
penalty, which is what papers report as CIDEr). Reimplementing any of them would give numbers that
cannot be compared with anybody's, so this module only feeds the package.

The tokenizer and METEOR are Java programs that the package runs with `java` from PATH; without
it `JavaNotFoundError` says how to install it. Scores are fractions (CIDEr can exceed 1), as the
package returns them; papers print them times 100. CIDEr weighs n-grams by how rare they are
among all the references scored together, so a split's CIDEr is only comparable when the whole
split is scored in one call.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Mapping, Sequence

Captions = Mapping[Any, Sequence[str]]
"""{id: [caption, ...]}: one prediction per id, or the id's references."""

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""The keys of the scores, named as COCOEvalCap names them."""

# Characters a line-preserving tokenizer may take as the end of a line: one inside a caption
# would shift every later caption onto the wrong id.
_LINE_BREAKS = str.maketrans({char: " " for char in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


class JavaNotFoundError(RuntimeError):
    """The PTB tokenizer and METEOR need a Java runtime and none is on PATH."""


def require_java() -> str:
    """The path of `java` on PATH, or JavaNotFoundError saying how to get one."""
    java = shutil.which("java")
    if java is not None:
        return java
    java_home = os.environ.get("JAVA_HOME")
    hint = f" (JAVA_HOME is {java_home}: put {java_home}/bin on PATH)" if java_home else ""
    raise JavaNotFoundError(
        "caption metrics need Java: pycocoevalcap runs the Stanford PTB tokenizer and METEOR 1.5 "
        f"with `java`, which is not on PATH{hint}. Install it with: apt-get install -y default-jre-headless"
    )


class CaptionScorer:
    """Scores {id: [prediction]} against {id: [references]}; keeps one METEOR process for all calls.

    METEOR's Java process loads its paraphrase tables once (about 10 s on two cores), so
    scoring several splits or checkpoints with one scorer pays that once. Pass `meteor` (a
    pycocoevalcap Meteor) to share one process further; the process stops when its Meteor object
    is dropped (pycocoevalcap stops it on deletion), at the latest by `close()` for one made here.
    """

    def __init__(self, meteor: Any = None) -> None:
        require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = meteor if meteor is not None else Meteor()

    def close(self) -> None:
        self._meteor = None

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def score(self, predictions: Captions, references: Captions) -> dict[str, float]:
        """BLEU-1..4, METEOR, ROUGE-L and CIDEr of the whole set (keys in METRICS)."""
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        if self._meteor is None:
            raise RuntimeError("this CaptionScorer is closed")
        _check_inputs(predictions, references)
        gts = ptb_tokenize(references)
        res = ptb_tokenize(predictions)
        scores: dict[str, float] = {}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"Bleu_{n}": float(value) for n, value in enumerate(bleu, start=1)})
        scores["METEOR"] = float(self._meteor.compute_score(gts, res)[0])
        scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        return scores


def caption_scores(predictions: Captions, references: Captions) -> dict[str, float]:
    """One call's scores, its METEOR process started and stopped here (see CaptionScorer)."""
    with CaptionScorer() as scorer:
        return scorer.score(predictions, references)


def ptb_tokenize(captions: Captions) -> dict[Any, list[str]]:
    """{id: [caption]} -> {id: [tokenized caption]}, by pycocoevalcap's PTBTokenizer, as COCO does."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    require_java()
    given = {key: [{"caption": str(text).translate(_LINE_BREAKS)} for text in texts] for key, texts in captions.items()}
    tokenized = PTBTokenizer().tokenize(given)
    for key, texts in given.items():
        if len(tokenized.get(key, [])) != len(texts):
            raise RuntimeError(
                f"the PTB tokenizer returned {len(tokenized.get(key, []))} captions for id {key!r}, "
                f"which has {len(texts)}: did `java` fail? (its messages are above)"
            )
    return tokenized


def _check_inputs(predictions: Captions, references: Captions) -> None:
    missing, unknown = references.keys() - predictions.keys(), predictions.keys() - references.keys()
    if missing or unknown:
        raise ValueError(
            f"predictions and references differ: {len(missing)} ids without a prediction "
            f"(e.g. {sorted(map(str, missing))[:3]}), {len(unknown)} without references "
            f"(e.g. {sorted(map(str, unknown))[:3]})"
        )
    if not references:
        raise ValueError("no caption to score")
    for key, texts in predictions.items():
        if isinstance(texts, str) or len(texts) != 1:
            raise ValueError(f"id {key!r}: give a list of exactly one prediction, not {texts!r:.80}")
    for key, texts in references.items():
        if isinstance(texts, str) or not texts:
            raise ValueError(f"id {key!r}: give a non-empty list of reference captions, not {texts!r:.80}")
