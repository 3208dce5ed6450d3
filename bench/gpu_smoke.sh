#!/usr/bin/env bash
# Does the whole path work on a GPU? A few minutes on one H100 or H200 (issue 18's first slice):
#   bash bench/gpu_smoke.sh OUT_DIR
#
# 1. writes the demo's tiny files (exps/tiny_assets.py, with a shorter language-model warm-up);
# 2. for each precision in $PRECISIONS (default "bf16 fp16"; fp16 trains with loss scaling), runs
#    the demo's pre-training and then fine-tuning through exps/pretrain.sh and exps/finetune.sh,
#    attached, one process, on $DEVICE (default cuda), with the demo's epochs (seconds on a GPU);
# 3. loads the fine-tuned checkpoint with model.load and generates on the device, beside the same
#    on the CPU (bench/smoke_generate.py);
# 4. runs the compiled fine-tuning step at the 7B shape for a few steps (bench/throughput.py; on a
#    machine without a GPU it measures the tiny configuration; SKIP_7B=1 leaves it out).
#
# Each check appends {"check", "ok", "seconds"} to OUT_DIR/smoke.jsonl, after the JSON line of the
# bench it ran, if any, and writes its output to OUT_DIR/<check>.log. A failure does not stop the
# later checks; the exit status is 1 when any failed. PYTHON picks the interpreter (default
# python3); tried on the CPU with DEVICE=cpu PRECISIONS="fp32 bf16".
set -uo pipefail
out="${1:?usage: bash bench/gpu_smoke.sh OUT_DIR}"
repo_root="$(CDPATH= cd -- "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$out"
out="$(CDPATH= cd -- "$out" && pwd)"
export PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export FOREGROUND=1 NPROC_PER_NODE=1  # attached, one process
device="${DEVICE:-cuda}"
read -r -a precisions <<< "${PRECISIONS:-bf16 fp16}"
failed=0

# check NAME COMMAND...: runs COMMAND, its output in OUT_DIR/NAME.log, and records the outcome.
check() {
    local name="$1"; shift
    local started=$SECONDS status=0
    echo "== smoke: $name" >&2
    "$@" > "$out/$name.log" 2>&1 || status=$?
    local ok=true
    [ "$status" -eq 0 ] || { ok=false; failed=1; tail -n 20 "$out/$name.log" >&2; }
    grep -h '^{' "$out/$name.log" | tail -n 1 >> "$out/smoke.jsonl"  # the bench's own line, if any
    echo "{\"check\": \"$name\", \"ok\": $ok, \"exit_status\": $status, \"seconds\": $((SECONDS - started))}" \
        | tee -a "$out/smoke.jsonl"
}

assets="$out/assets"
check tiny_files "$PYTHON" -m exps.tiny_assets "$assets" --train_pictures 48 --held_out_pictures 24 \
    --language_model_steps 150
tiny=(--imagebind_path "$assets/imagebind/tiny.pth" --imagebind_config "$assets/imagebind/tiny.yaml"
      --device "$device" --num_workers 2 --batch_size 4 --warmup_epochs 1 --blr 1.0 --seed 0 --keep_last 1)

for precision in "${precisions[@]}"; do
    run="$out/$precision"
    check "pretrain_$precision" bash -c '. "$0/exps/pretrain.sh" "$@"' "$repo_root" "$assets/llama" \
        "$assets/pretrain.yaml" "$run/pretrain" "${tiny[@]}" --precision "$precision" --epochs 30 --split_epoch 1 \
        --save_freq 30 --print_freq 60
    check "finetune_$precision" bash -c '. "$0/exps/finetune.sh" "$@"' "$repo_root" "$assets/llama" \
        "$run/pretrain/checkpoint-last.pth" "$assets/finetune.yaml" "$run/finetune" "${tiny[@]}" \
        --precision "$precision" --epochs 16 --blr 0.5 --save_freq 16 --print_freq 100
    ln -sfn "$assets" "$run/assets"  # smoke_generate reads RUN_DIR/assets
    check "generate_$precision" "$PYTHON" -m bench.smoke_generate "$run" --device "$device"
done

if [ "${SKIP_7B:-0}" != 1 ]; then
    check compiled_7b_step "$PYTHON" -m bench.throughput --phase finetune --batch_size 4 --compile --steps 3 \
        --warmup_steps 2 --num_workers 2
fi
echo "== smoke: done; results in $out/smoke.jsonl" >&2
exit "$failed"
