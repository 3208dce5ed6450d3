"""Reading and writing the files users have; building a model from them.

    build.py               build_model / build_from_files: LLaMA folder + ImageBind file + adapter
                           checkpoint -> ImageBindLLM (meta device, allocated once, copied tensor by tensor)
    adapter_checkpoint.py  7B-pretrained.pth, 7B.pth and our checkpoints: the released layout, 'llma.'
                           keys, the record our runs add; a file of another kind named as such
    llama_folder.py        LLAMA_DIR: which model folder, either layout, its tokenizer (LlamaFolder)
    meta_folder.py         Meta's params.json + consolidated.NN.pth (model-parallel shards merged on reading)
    hf_folder.py           a Hugging Face folder read as Meta's state dict (safetensors or .bin)
    hf_layout.py           Hugging Face names and rotary row order <-> Meta's
    base_record.py         which LLaMA a checkpoint was trained on (a fingerprint), and the loud warning
    delta_merge.py         base + published delta -> a LLaMA folder (7B_chinese)
    summary.py             what a file holds, from its keys alone (`python -m model.convert inspect`,
                           and the error for a file of the wrong kind)
    tensor_files.py        torch.save files read memory-mapped and written one tensor at a time

Imports flow one way: build -> adapter_checkpoint -> summary, llama_folder -> meta_folder, hf_folder
-> tensor_files.
"""

import os

PathLike = str | os.PathLike  # what every reader and writer here takes for a path
