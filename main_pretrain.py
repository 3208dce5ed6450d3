"""Pre-train ImageBind-LLM's bridge, prefix and gates on image-caption data.

    python main_pretrain.py --llama_path LLAMA_DIR --data_config DATA.yaml --output_dir OUT [flags]

Usually started through `. exps/pretrain.sh LLAMA_DIR DATA.yaml OUT`, which adds torchrun and the
published recipe; `--help` lists every flag. The run itself lives in engine/.
"""

import functools
import sys

from data.dataset import PretrainDataset
from data.training_data import DATA_ERRORS, build_training_data
from engine.entry import run_entry_point


def main(argv: list[str] | None = None) -> int:
    return run_entry_point("pretrain", functools.partial(build_training_data, PretrainDataset), argv, DATA_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
