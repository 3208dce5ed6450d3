"""What any training run needs and nothing of this project: it imports no other package of ours.

    distributed.py     where this process sits in a torchrun or SLURM launch, its process group,
                       host-side collectives (means, sums of counts, any rank, gather)
    checkpoint.py      checkpoint files in an output folder: atomic writes, names, the latest, pruning
    lr_schedule.py     the learning rate as a pure function of the fractional epoch, and its checks
    metrics.py         meters and the progress line (rates, data wait, ETA)
    metric_writers.py  log.txt (one JSON object a line) and TensorBoard events
    log.py             one logging set-up: informative on rank 0, quiet elsewhere
    preemption.py      a stop signal turned into a flag read at a step boundary
    rng_state.py       every random generator a step draws from, captured and restored
    run_args.py        the differences between two runs' arguments, sorted and worded
"""
