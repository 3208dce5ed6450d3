"""Training data: from a YAML data config to batches, the same for both phases.

    training_data.py  DataSettings (what the run asks for) -> datasets, batch sampler, collate
    config.py         the YAML data config (META: meta files, per-file options) into dataclasses
    caption_table.py  pre-training meta files (TSV/CSV, url + caption) indexed into packed arrays
    records.py        fine-tuning records (Alpaca, LLaVA conversations) into prompt/answer exchanges
    dataset.py        PretrainDataset, FinetuneDataset: a sample from an index, bad ones reported
    prompt_tokens.py  exchanges -> tokens and labels (loss on answers only, as published)
    images.py, transforms.py   reading images; ImageBind's eval transform, the training crop's maker
    train_crop.py     the training image: the published random crop, decoded at the scale it needs
    collate.py        samples -> a padded batch, bad samples dropped and counted
    sampler.py        the batch sampler: ratio mixing, permutation, sub-epochs, length grouping,
                      rank sharding, mid-epoch resume
    bad_samples.py    the bad-sample policy and the fraction check
    sample.py, packed_strings.py   a sample's fields; many strings in two numpy arrays

Every other modality, from files (what `generate` takes; README's table):

    modality_inputs.py  {"Image": [path, w], "Audio": [path, w], ...} -> the tensors, batched
    audio.py            sound -> [3, 1, 128, 204]: decode, resample.py, clip_timing.py, filterbank.py
    video.py            video -> [15, 3, 2, 224, 224]: decode, clips, scale, three crops
    text_tokens.py      text -> [77] ids: CLIP's BPE, for ImageBind's text branch
    sensors.py          depth, thermal, IMU by this project's conventions

Imports flow one way: data/ uses model/tokenizer.py (the tokenizer, prompts and batch constants
shared with the model) and nothing else of the project. The package imports nothing on its own, so
that `python -m data.caption_table META_FILE` starts quickly.
"""
