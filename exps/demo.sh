#!/usr/bin/env bash
# The whole path on a CPU in about two minutes, with no weights or data downloaded:
#   bash exps/demo.sh [OUTPUT_DIR]          (default ./demo_output; everything goes under it)
#
# 1. makes (or reuses) .venv with exps/setup_venv.sh (the first time it installs the packages);
# 2. writes tiny stand-ins for the real files (exps/tiny_assets.py): a LLaMA folder in Meta's layout
#    whose two-layer model first learns the demo's text as a language model (a real base is one:
#    ImageBind-LLM keeps its base frozen, and an adapter cannot teach a frozen random network to
#    speak), a SentencePiece tokenizer, a random ImageBind with its config file, pictures of
#    coloured shapes with captions (training and held-out), and instruction data;
# 3. pre-trains with exps/pretrain.sh, then fine-tunes from that checkpoint with exps/finetune.sh,
#    exactly as on a GPU node but attached, on one CPU process, with flags sized for it;
# 4. generates from the results for the held-out pictures and prints what was learned
#    (exps/demo_report.py): losses, captions next to their truth, fractions right next to chance.
#
# Running it again starts afresh in the same folder: it deletes what an earlier demo wrote there
# (assets/, pretrain/, finetune/, summary.*) and nothing else. It refuses a folder that holds
# other files and was not made by the demo.
set -euo pipefail
repo_root="$(CDPATH= cd -- "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"  # CDPATH=: an exported CDPATH would mislead cd
output_dir="${1:-./demo_output}"
marker=".imagebind_llm_demo"
started=$SECONDS

if [ -d "$output_dir" ] && [ ! -e "$output_dir/$marker" ] && [ -n "$(ls -A "$output_dir")" ]; then
    echo "demo: $output_dir holds files that the demo did not write; give an empty or new folder" >&2
    exit 1
fi
mkdir -p "$output_dir"
output_dir="$(CDPATH= cd -- "$output_dir" && pwd)"
touch "$output_dir/$marker"
rm -rf "$output_dir/assets" "$output_dir/pretrain" "$output_dir/finetune" \
    "$output_dir/summary.json" "$output_dir/summary.txt"

# The launchers and `python -m exps...` use the venv's python; the project is importable from anywhere.
PYTHON="$(bash "$repo_root/exps/setup_venv.sh" | tail -n 1)"
export PYTHON
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"
# One thread: the models are tiny, so more threads only wait on each other (badly so on a busy
# machine), and one thread gives the same arithmetic, and so the same answers, on every run.
export OMP_NUM_THREADS=1
# Attached, in one process, on the CPU even where a GPU is visible (the figures stay comparable).
export FOREGROUND=1 NPROC_PER_NODE=1

assets="$output_dir/assets"
echo "== demo: writing the tiny files under $assets"
"$PYTHON" -m exps.tiny_assets "$assets" --train_pictures 48 --held_out_pictures 24 --language_model_steps 300
"$PYTHON" -m exps.modality_examples "$assets/modalities"  # a sound, a clip, ...: the notebook's other modalities
"$PYTHON" -m exps.build_visual_cache "$assets/shapes/pictures" "$assets/visual_cache.pt" --device cpu \
    --imagebind_path "$assets/imagebind/tiny.pth" --imagebind_config "$assets/imagebind/tiny.yaml"  # the notebook's cache

tiny_encoder=(--imagebind_path "$assets/imagebind/tiny.pth" --imagebind_config "$assets/imagebind/tiny.yaml")
# Small batches, a high learning rate and many short epochs: a few hundred steps learn the task.
cpu_run=(--device cpu --num_workers 0 --batch_size 4 --warmup_epochs 1 --blr 1.0 --seed 0 --keep_last 1)

echo "== demo: pre-training (exps/pretrain.sh)"
. "$repo_root/exps/pretrain.sh" "$assets/llama" "$assets/pretrain.yaml" "$output_dir/pretrain" \
    "${tiny_encoder[@]}" "${cpu_run[@]}" --epochs 30 --split_epoch 1 --save_freq 30 --print_freq 60 \
    --val_data_config "$assets/held_out.yaml"

echo "== demo: fine-tuning from the pre-training checkpoint (exps/finetune.sh)"
. "$repo_root/exps/finetune.sh" "$assets/llama" "$output_dir/pretrain/checkpoint-last.pth" "$assets/finetune.yaml" \
    "$output_dir/finetune" "${tiny_encoder[@]}" "${cpu_run[@]}" --epochs 16 --save_freq 16 --print_freq 100 \
    --blr 0.5  # half pre-training's rate: at 1.0 the yes/no answers stayed near chance (0.5-0.8), at 0.5 all right

echo "== demo: generating for the held-out pictures"
"$PYTHON" -m exps.demo_report "$output_dir"
echo "== demo: done in $((SECONDS - started)) s; everything is under $output_dir"
