"""Fine-tune ImageBind-LLM's LLaMA norms, biases and LoRA factors on instruction data.

    python main_finetune.py --llama_path LLAMA_DIR --pretrained_path PRETRAINED.pth \
        --data_config DATA.yaml --output_dir OUT [flags]

Usually started through `. exps/finetune.sh LLAMA_DIR PRETRAINED.pth DATA.yaml OUT`, which adds
torchrun and the published recipe; `--help` lists every flag. The run itself lives in engine/, the
data in data/.
"""

import sys

from data.dataset import FinetuneDataset
from data.training_data import DATA_ERRORS, build_training_data
from engine.run import TrainingRun, exit_status, parse_flags

PHASE = "finetune"


def main(argv: list[str] | None = None) -> int:
    args = parse_flags(PHASE, argv)
    with exit_status(DATA_ERRORS) as status:
        with TrainingRun(args, PHASE) as run:  # process group, logging, settings, model, optimizer, resume
            run.train(build_training_data(FinetuneDataset, run.data_request()))
    return status.code


if __name__ == "__main__":
    sys.exit(main())
