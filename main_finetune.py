"""Fine-tune ImageBind-LLM's LLaMA norms, biases and LoRA factors on instruction data.

    python main_finetune.py --llama_path LLAMA_DIR --pretrained_path PRETRAINED.pth \
        --data_config DATA.yaml --output_dir OUT [flags]

Usually started through `. exps/finetune.sh LLAMA_DIR PRETRAINED.pth DATA.yaml OUT`, which adds
torchrun and the published recipe; `--help` lists every flag. The run itself lives in engine/, the
data in data/.
"""

from data.dataset import FinetuneDataset
from data.training_data import DATA_ERRORS, DataSettings, build_training_data
from engine.run import TrainingRun, exit_on_user_error, parse_flags
from evaluation.during_training import EVALUATION_ERRORS, training_evaluator


def main(argv: list[str] | None = None) -> None:
    # An error the user can fix (also one in set-up) ends the process with one line and status 1.
    with exit_on_user_error(DATA_ERRORS + EVALUATION_ERRORS), TrainingRun(parse_flags("finetune", argv), "finetune") as run:
        run.train(build_training_data(FinetuneDataset, DataSettings(**run.data_settings())),
                  training_evaluator(run.evaluation_settings()))


if __name__ == "__main__":
    main()
