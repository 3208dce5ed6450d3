"""Measurements: the training step's throughput at the real 7B shape (issue 6), the start-up, and their record.

    throughput.py    the benchmark: `python -m bench.throughput --phase pretrain --batch_size 64`
    random_model.py  ImageBind-LLM with random weights, built straight on the device
    workload.py      the standard workload as samples, batched the way training batches them
    flops.py         the useful FLOPs that the utilisation figure counts
    memory_estimate.py  a step's peak GPU memory, estimated on the CPU with fake tensors
    run_matrix.sh    issue 6's measurements on one GPU, most important first
    gpu_smoke.sh     the whole path on a GPU in minutes (launchers in bf16 and fp16, generation, the compiled step)
    smoke_generate.py  model.load + generate on a device beside the same on the CPU (gpu_smoke.sh's step)
    startup.py       time to the first step through the launchers, as the demo starts each phase
    modality_readers.py  files per second of the sound, video and text readers on one core
    loader.py        training samples per second per core on generated JPEGs, the published loader alongside
    RESULTS.md       measured figures, with date, card and torch version; runs.jsonl their JSON lines
"""
