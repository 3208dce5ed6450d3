"""Which LLaMA a checkpoint was trained on, and a loud warning when it is loaded on another.

An adapter only makes sense on the LLaMA it was trained with: the released 7B-pretrained.pth and
7B.pth, trained on Open-Chinese-LLaMA-7B, produce gibberish on Meta's 7B, and nothing fails. So our
checkpoints carry a base record,

    {'llama_type': '7B_chinese', 'params': {...params.json...}, 'fingerprint': '3f2a...'}

and loading one compares it with the base being loaded (check_base). The fingerprint hashes a few
rows of a few tensors (the embedding, layer 0's wq and wk, the final norm, the output layer) in
float32 under Meta's names and row order: cheap (the rows are read through mmap), and the same for
a Meta folder and its Hugging Face conversion. The same model stored in another precision (say
bfloat16 instead of float16) has other values, so another fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Mapping, Protocol, Sequence

import torch

from model.files import PathLike
from model.llama import PARAMS_JSON_FIELDS, ModelArgs

logger = logging.getLogger(__name__)

DEFAULT_LLAMA_TYPE = "7B_chinese"  # the reference's default; the released checkpoints were trained on it

FINGERPRINT_KEYS = ("tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.attention.wk.weight",
                    "norm.weight", "output.weight")
FINGERPRINT_ROWS = 8  # rows of each tensor, spread over it (an embedding's first rows may never be trained)
FINGERPRINT_HEX_DIGITS = 16

RELEASED_BASE_NOTE = (
    "The released 7B-pretrained.pth and 7B.pth were trained on Open-Chinese-LLaMA-7B (llama_type 7B_chinese: "
    "Meta's 7B plus the published delta, built with `python -m model.convert merge-delta LLAMA_DIR/7B "
    "DELTA_DIR LLAMA_DIR/7B_chinese`); on any other base they produce gibberish."
)


class RowReader(Protocol):
    """A lazy LLaMA state dict that reads a tensor's shape and a few of its rows without the rest
    (meta_folder.MergedShards, hf_folder.HFLlamaState); LlamaFolder.base_record() fingerprints one."""

    def shape(self, key: str) -> torch.Size: ...

    def rows(self, key: str, index: Sequence[int]) -> torch.Tensor: ...


def fingerprint(state: RowReader) -> str:
    """A short hex digest of FINGERPRINT_ROWS rows of each of FINGERPRINT_KEYS, as float32."""
    digest = hashlib.sha256()
    for key in FINGERPRINT_KEYS:
        shape = tuple(state.shape(key))
        index = [(2 * i + 1) * shape[0] // (2 * FINGERPRINT_ROWS) for i in range(FINGERPRINT_ROWS)]
        rows = state.rows(key, index).to(torch.float32).contiguous()
        digest.update(f"{key}{shape}".encode())
        digest.update(rows.numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_HEX_DIGITS]


def model_shape(params: Mapping[str, Any]) -> dict[str, Any]:
    """What params.json fixes about the computation, written one way: a Meta params.json and the
    one made from a Hugging Face config.json of the same model give the same dict."""
    args = ModelArgs.from_params({key: params[key] for key in PARAMS_JSON_FIELDS if key in params})
    shape = {"dim": args.dim, "n_layers": args.n_layers, "n_heads": args.n_heads, "n_kv_heads": args.kv_heads,
             "ffn_hidden_dim": args.ffn_hidden_dim, "norm_eps": args.norm_eps, "rope_theta": args.rope_theta}
    if args.vocab_size != -1:  # Meta writes -1: the tokenizer decides (and the fingerprint sees the embedding's size)
        shape["vocab_size"] = args.vocab_size
    return shape


def base_differences(recorded: Mapping[str, Any], loaded: Mapping[str, Any]) -> list[str]:
    """How the loaded base differs from the recorded one, one line each ([] when they match)."""
    differences = []
    if recorded["fingerprint"] != loaded["fingerprint"]:
        differences.append(f"fingerprint {recorded['fingerprint']} (checkpoint) != {loaded['fingerprint']} (loaded)")
    saved, now = model_shape(recorded["params"]), model_shape(loaded["params"])
    differences += [f"{key} {saved[key]} (checkpoint) != {now[key]} (loaded)"
                    for key in saved if key in now and saved[key] != now[key]]
    return differences


def _describe(record: Mapping[str, Any], where: PathLike | None = None) -> str:
    name = record["llama_type"]
    return f"{name}{f' at {where}' if where else ''} (fingerprint {record['fingerprint']})"


def check_base(source: str, recorded: Mapping[str, Any] | None, loaded: Mapping[str, Any],
               loaded_dir: PathLike) -> None:
    """Log, once, how the base a checkpoint records compares with the one loaded.

    recorded None (the released files): a note that says
    which base the released files need (a warning unless 7B_chinese is what is loaded). A
    difference: one multi-line WARNING naming both bases and what differs. A match: nothing.
    """
    if recorded is None:
        log = logger.info if loaded["llama_type"] == DEFAULT_LLAMA_TYPE else logger.warning
        log("%s carries no base record (it is a released file), so it cannot be checked against the LLaMA loaded, "
            "%s at %s.\n%s", source, loaded["llama_type"], loaded_dir, RELEASED_BASE_NOTE)
        return
    differences = base_differences(recorded, loaded)
    if differences:
        logger.warning(
            "%s was trained on another LLaMA base than the one loaded:\n"
            "  checkpoint's base: %s\n"
            "  loaded base:       %s\n"
            "  differences:       %s\n"
            "Its outputs on this base will be wrong (often gibberish), and training from it starts from a mismatch. "
            "Load the base it names: put that folder in LLAMA_DIR and pass --llama_type %s (llama_type= in "
            "model.load). The same weights stored in another precision also have another fingerprint.%s",
            source, _describe(recorded), _describe(loaded, loaded_dir), "\n                     ".join(differences),
            recorded["llama_type"],
            f"\n{RELEASED_BASE_NOTE}" if recorded["llama_type"] == DEFAULT_LLAMA_TYPE else "",
        )
    elif recorded["llama_type"] != loaded["llama_type"]:
        logger.info("%s was trained on %s; the same weights are loaded from %s", source, _describe(recorded), loaded_dir)
