"""`python -m model.convert`: make the LLaMA folders ImageBind-LLM needs, and look inside checkpoints.

    python -m model.convert merge-delta LLAMA_DIR/7B DELTA_DIR LLAMA_DIR/7B_chinese [--force]
        Meta's 7B + the published Open-Chinese-LLaMA delta (params.json + consolidated.00.pth)
        -> the base the released checkpoints were trained on (model/files/delta_merge.py).
    python -m model.convert from-hf HF_DIR LLAMA_DIR/<name> [--dtype float16|bfloat16|float32] [--force]
        A Hugging Face LLaMA folder -> Meta's layout (params.json, consolidated.00.pth, and its
        tokenizer.model). Optional: Hugging Face folders also load as they are.
    python -m model.convert inspect FILE
        Layout, phase, tensors, recorded base, epoch and step of a checkpoint (model/files/summary.py).

Existing folders are never overwritten without --force. Errors are one line saying what to do;
the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Sequence

import torch

from model.files import PathLike
from model.files.delta_merge import merge_delta
from model.files.hf_folder import HFLlamaState
from model.files.llama_folder import TOKENIZER_NAME
from model.files.meta_folder import prepare_llama_folder, write_llama_folder
from model.files.summary import format_summary, summarize_file
from model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# What a command may fail with because of the user's files or flags: reported in one line, no traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, KeyError)


def convert_hf_folder(hf_dir: PathLike, out_dir: PathLike, dtype: torch.dtype | None = None, force: bool = False) -> Path:
    """Write the Hugging Face LLaMA folder `hf_dir` in Meta's layout into out_dir, one tensor at a
    time, in `dtype` (None: as stored), with its tokenizer.model. Returns out_dir."""
    state = HFLlamaState(hf_dir)  # reads config.json first: a model we cannot compute is refused here
    tokenizer = Path(hf_dir) / TOKENIZER_NAME
    if tokenizer.is_file():
        Tokenizer(tokenizer)  # refuses what SentencePiece cannot read before anything is written
    out_dir = prepare_llama_folder(out_dir, force, inputs=[hf_dir])
    logger.info("converting %d tensors: %s -> %s%s", len(state), hf_dir, out_dir, f" in {dtype}" if dtype else "")
    write_llama_folder(out_dir, state, state.params, dtype=dtype)
    if tokenizer.is_file():
        shutil.copyfile(tokenizer, out_dir / TOKENIZER_NAME)
    else:
        logger.warning("%s has no %s: put LLaMA's SentencePiece tokenizer.model beside the model folders "
                       "(LLAMA_DIR/tokenizer.model) or into %s", hf_dir, TOKENIZER_NAME, out_dir)
    logger.info("wrote %s", out_dir)
    return out_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    merge = commands.add_parser("merge-delta", help="base + published delta -> a LLaMA folder (e.g. 7B_chinese)")
    merge.add_argument("base_dir", type=Path, help="Meta's LLaMA folder, e.g. LLAMA_DIR/7B")
    merge.add_argument("delta_dir", type=Path, help="the delta: params.json and consolidated.00.pth")
    merge.add_argument("out_dir", type=Path, help="the folder to write, e.g. LLAMA_DIR/7B_chinese")
    merge.add_argument("--force", action="store_true", help="replace the model in out_dir if there is one")

    from_hf = commands.add_parser("from-hf", help="a Hugging Face LLaMA folder -> Meta's layout")
    from_hf.add_argument("hf_dir", type=Path, help="config.json with model*.safetensors or pytorch_model*.bin")
    from_hf.add_argument("out_dir", type=Path, help="the folder to write, e.g. LLAMA_DIR/7B_hf")
    from_hf.add_argument("--dtype", choices=sorted(STORAGE_DTYPES), default=None,
                         help="store the tensors in this dtype (default: as the source stores them)")
    from_hf.add_argument("--force", action="store_true", help="replace the model in out_dir if there is one")

    inspect = commands.add_parser("inspect", help="describe a checkpoint without building the model")
    inspect.add_argument("file", type=Path, help="a .pth / .bin file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "merge-delta":
            merge_delta(args.base_dir, args.delta_dir, args.out_dir, force=args.force)
        elif args.command == "from-hf":
            convert_hf_folder(args.hf_dir, args.out_dir, STORAGE_DTYPES.get(args.dtype), force=args.force)
        else:
            print(format_summary(summarize_file(args.file)))  # the command's output, not a log line
    except USER_ERRORS as error:
        logger.error("%s: %s", args.command, error.args[0] if isinstance(error, KeyError) and error.args else error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
