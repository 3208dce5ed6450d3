#!/usr/bin/env bash
# Issue 6's measurements on one GPU, most important first: bash bench/run_matrix.sh OUT_DIR [FIRST [LAST]]
# Each run appends its JSON line to OUT_DIR/runs.jsonl (a {"failed": ...} line when it fails or
# times out) and its log to OUT_DIR/<n>.log. FIRST/LAST pick a slice of the numbered runs below.
# PYTHON (default python3) runs the benchmark; RUN_TIMEOUT (seconds, default 900) bounds each run.
set -uo pipefail
out="${1:?usage: bash bench/run_matrix.sh OUT_DIR [FIRST [LAST]]}"
first="${2:-1}"
last="${3:-99}"
python="${PYTHON:-python3}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$out"

runs=(
    "--phase pretrain --batch_size 64 --compile"                              # 1 best-batch target (>= 260)
    "--phase finetune --batch_size 16 --compile"                              # 2 best-batch target (>= 75)
    "--phase finetune --batch_size 4 --compile --activation_checkpointing"    # 3 low-memory target (<= 22 GiB)
    "--phase pretrain --batch_size 4 --compile"                               # 4 batch-4 target (>= 120)
    "--phase finetune --batch_size 4 --compile"                               # 5 batch-4 target (>= 50)
    "--phase pretrain --batch_size 4"                                         # 6-9 eager baselines
    "--phase pretrain --batch_size 64"
    "--phase finetune --batch_size 4"
    "--phase finetune --batch_size 16"
    "--phase finetune --batch_size 4 --activation_checkpointing"              # 10 low memory, eager
    "--phase pretrain --batch_size 128 --compile"                             # 11-13 larger batches
    "--phase finetune --batch_size 16 --compile --group_by_length"
    "--phase finetune --batch_size 32 --compile --activation_checkpointing"
    "--phase pretrain --batch_size 4 --compile --compile_mode reduce-overhead"  # 14-15 CUDA graphs per block
    "--phase finetune --batch_size 4 --compile --compile_mode reduce-overhead"
    "--phase pretrain --batch_size 64 --compile --steps 5 --profile $out/profile_pretrain_b64.txt"  # 16-17 profiles
    "--phase finetune --batch_size 16 --compile --steps 5 --profile $out/profile_finetune_b16.txt"
)

for index in "${!runs[@]}"; do
    number=$((index + 1))
    if [ "$number" -lt "$first" ] || [ "$number" -gt "$last" ]; then
        continue
    fi
    run="${runs[$index]}"
    echo "run $number: $run" >&2
    # shellcheck disable=SC2086  # the run's flags are meant to split
    if ! timeout "${RUN_TIMEOUT:-900}" "$python" -m bench.throughput $run >>"$out/runs.jsonl" 2>"$out/$number.log"; then
        echo "{\"failed\": \"$run\", \"run\": $number, \"log\": \"$number.log\"}" >>"$out/runs.jsonl"
    fi
done
