"""Training data: YAML meta configs, datasets, prompts and labels, batching and sampling.

Import from the modules: `data.config` (load_data_config), `data.dataset` (PretrainDataset,
FinetuneDataset), `data.transforms`, `data.collate` (collate_samples), `data.sampler`
(DistributedBatchSampler), `data.bad_samples` (policy, check_bad_fraction), and for the entry
points all of them assembled: `data.training_data` (build_training_data). This package imports
nothing on its own, so that `python -m data.caption_table META_FILE` starts quickly.
"""
