"""Fine-tune ImageBind-LLM's LLaMA norms, biases and LoRA factors on instruction data.

    python main_finetune.py --llama_path LLAMA_DIR --pretrained_path PRETRAINED.pth \
        --data_config DATA.yaml --output_dir OUT [flags]

Usually started through `. exps/finetune.sh LLAMA_DIR PRETRAINED.pth DATA.yaml OUT`, which adds
torchrun and the published recipe; `--help` lists every flag. The run itself lives in engine/.
"""

import functools
import sys

from data.dataset import FinetuneDataset
from data.training_data import DATA_ERRORS, build_training_data
from engine.entry import run_entry_point


def main(argv: list[str] | None = None) -> int:
    return run_entry_point("finetune", functools.partial(build_training_data, FinetuneDataset), argv, DATA_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
