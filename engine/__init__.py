"""Training, the same for both phases. The entry points call `engine.entry.run_entry_point`.

    arguments.py      the command line (one parser builder for both phases)
    settings.py       what the flags resolve to (paths, device, precision, learning rate), checked
    entry.py, run.py  a whole run: set-up, resume, epochs, checkpoints, a clean close
    train_loop.py     one epoch: accumulation, mixed precision, LR per step, progress
    running_stats.py  per-step numbers summed on the device, read only when shown or saved
    parallel.py       the loss module DDP wraps, and what ranks share
    checkpointing.py  what a checkpoint holds; writing and restoring it
    resume.py         which checkpoint to continue from, and whether it may
    data_source.py    what the entry points hand over from data/ (the engine never imports data/)
    compilation.py    --compile: torch.compile block by block
    model_setup.py, optimizer.py, precision.py, evaluate.py, errors.py
"""
