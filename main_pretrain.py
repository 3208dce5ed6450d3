"""Pre-train ImageBind-LLM's bridge, prefix and gates on image-caption data.

    python main_pretrain.py --llama_path LLAMA_DIR --data_config DATA.yaml --output_dir OUT [flags]

Usually started through `. exps/pretrain.sh LLAMA_DIR DATA.yaml OUT`, which adds torchrun and the
published recipe; `--help` lists every flag. The run itself lives in engine/, the data in data/.
"""

import sys

from data.dataset import PretrainDataset
from data.training_data import DATA_ERRORS, build_training_data
from engine.run import TrainingRun, exit_status, parse_flags

PHASE = "pretrain"


def main(argv: list[str] | None = None) -> int:
    args = parse_flags(PHASE, argv)
    with exit_status(DATA_ERRORS) as status:
        with TrainingRun(args, PHASE) as run:  # process group, logging, settings, model, optimizer, resume
            run.train(build_training_data(PretrainDataset, run.data_request()))
    return status.code


if __name__ == "__main__":
    sys.exit(main())
