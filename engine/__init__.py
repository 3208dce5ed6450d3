"""Training, the same for both phases. main_pretrain.py and main_finetune.py drive it:

    with exit_on_user_error(DATA_ERRORS), TrainingRun(parse_flags(phase, argv), phase) as run:
        run.train(build_training_data(DatasetClass, DataSettings(**run.data_settings())))

parse_flags reads the command line (flags.py); exit_on_user_error turns a user's mistake into one
line and status 1; TrainingRun checks the run's files (the checkpoint and the LLaMA folder read
once, no weight yet), the entry point builds the data, and `train` builds the model and the
optimizer and trains the epochs (run.py): a mistake in the data is found before the weights load.

One pre-training step, top to bottom: run.py's epoch loop makes the DataLoader (data_source.py)
and asks train_loop.py's Trainer for the epoch's steps; each step moves the batch to the device,
calls parallel.py's TrainingModule (the model's loss), steps the optimizer and adds its numbers to
running_stats.py; the Trainer yields after the step and the run decides whether to save
(checkpoint.py) or stop. Nothing calls back up.

    flags.py          the command line, the flags harmless on resume, the settings derived (checked)
    run.py            the entry points' run: set-up, resume, epochs, checkpoints, stops, exit status
    train_loop.py     one epoch of steps: accumulation, mixed precision, LR per step, progress
    running_stats.py  per-step numbers summed on the device, read only when shown or saved
    checkpoint.py     what a checkpoint holds, writing it, resuming from it (and whether it may)
    model_setup.py    the model from the files, shaped for training; --compile block by block
    data_source.py    the interface with data/: DataParts, a batch on the device, the DataLoader per epoch
    parallel.py       the loss module DDP wraps, and what ranks share
    optimizer.py      AdamW and its weight-decay rule
    precision.py      bf16 / fp16 / fp32: autocast, the frozen weights' dtype, the loss scaler
    evaluate.py       the validation loss
    errors.py         errors a user can fix, and their one-line message
"""
