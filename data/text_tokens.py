"""Text into ImageBind's text input: CLIP's byte-level BPE, 77 token ids per text.

    clip_token_ids(["a dog barking", "rain"]) -> LongTensor[2, 77]

As the public ImageBind tokenizer (facebookresearch/ImageBind): the text is repaired with ftfy,
HTML entities are unescaped twice, runs of whitespace become one space, the ends are stripped
and everything is lower-cased; it is split into words, apostrophe suffixes, single digits and
runs of other symbols, each mapped byte by byte onto printable characters and merged with
CLIP's 48,894 BPE merges. Each row is start-of-text, at most 75 tokens, end-of-text, then zeros.
(The copy of ImageBind inside the published ImageBind-LLM code truncates a long text after 77
tokens, losing its end-of-text token, whose position the text head reads; the newer rule is
kept here. Texts of up to 75 tokens get the same ids from both.)

The merges are CLIP's file `bpe_simple_vocab_16e6.txt.gz`, as the open_clip_torch package ships
it; it is found on disk without importing open_clip (whose import loads its models).
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
from pathlib import Path
from typing import Sequence

import torch

CONTEXT_LENGTH = 77
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary holds: 49408 ids in all
START, END = "<|startoftext|>", "<|endoftext|>"
WORD_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def vocab_path() -> Path:
    """CLIP's BPE merges file, from the installed open_clip_torch package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("CLIP's BPE vocabulary comes with the open_clip_torch package: pip install -r requirements.txt")
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


def _byte_characters() -> dict[int, str]:
    """Every byte value mapped onto a printable character (the printable Latin-1 ones to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


class ClipTokenizer:
    """CLIP's BPE as ImageBind's text encoder was trained with; see the module docstring."""

    def __init__(self, path: str | Path | None = None):
        import regex  # CLIP's word pattern needs Unicode classes (\p{L}) that `re` lacks

        with gzip.open(path or vocab_path(), "rt", encoding="utf-8") as stream:
            lines = stream.read().split("\n")[1:MERGES + 1]  # the first line is a version header
        merges = [tuple(line.split()) for line in lines]
        self.byte_characters = _byte_characters()
        symbols = list(self.byte_characters.values())
        vocabulary = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(pair) for pair in merges]
        self.ids = {token: index for index, token in enumerate([*vocabulary, START, END])}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
        self.whitespace = regex.compile(r"\s+")  # regex's notion of whitespace, as the public code's
        self._merged: dict[str, list[str]] = {START: [START], END: [END]}

    def clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self.whitespace.sub(" ", text).strip().lower()

    def _merge(self, word: str) -> list[str]:
        """The BPE pieces of one word (already mapped to byte characters); the last ends in </w>."""
        if word in self._merged:
            return self._merged[word]
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            pairs = set(zip(pieces, pieces[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, index = [], 0
            while index < len(pieces):
                if index < len(pieces) - 1 and (pieces[index], pieces[index + 1]) == best:
                    merged.append(pieces[index] + pieces[index + 1])
                    index += 2
                else:
                    merged.append(pieces[index])
                    index += 1
            pieces = merged
        self._merged[word] = pieces
        return pieces

    def encode(self, text: str) -> list[int]:
        """The BPE ids of `text`, without start and end tokens."""
        ids = []
        for word in self.pattern.findall(self.clean(text)):
            characters = "".join(self.byte_characters[byte] for byte in word.encode("utf-8"))
            ids.extend(self.ids[piece] for piece in self._merge(characters))
        return ids

    def __call__(self, texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        """[len(texts), context_length] ids: start, at most context_length - 2 tokens, end, zeros."""
        rows = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.ids[START]] + self.encode(text))[:context_length - 1] + [self.ids[END]]
            rows[row, :len(ids)] = torch.tensor(ids)
        return rows


@functools.lru_cache(maxsize=1)
def _default_tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def clip_token_ids(texts: str | Sequence[str]) -> torch.Tensor:
    """ImageBind's text input [N, 77] for one text or several."""
    return _default_tokenizer()([texts] if isinstance(texts, str) else list(texts))
