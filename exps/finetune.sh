# Fine-tune LLaMA's norms, biases and LoRA factors on instruction data, from a pre-training checkpoint.
#   . exps/finetune.sh LLAMA_DIR PRETRAINED_PTH DATA_YAML OUTPUT_DIR [extra main_finetune.py flags ...]
# Runs in the background on all visible GPUs (NPROC_PER_NODE overrides; NNODES, NODE_RANK,
# MASTER_ADDR, MASTER_PORT for several nodes), logging to OUTPUT_DIR/output.log; FOREGROUND=1 runs
# it attached and returns its status. Launching again on the same OUTPUT_DIR resumes.
# Defaults are the published recipe; flags given after OUTPUT_DIR override them.

_imagebind_llm_finetune() {
    local usage=". exps/finetune.sh LLAMA_DIR PRETRAINED_PTH DATA_YAML OUTPUT_DIR [flags ...]"
    _imagebind_llm_require "LLAMA_DIR" "${1:-}" dir "$usage" || return 1
    _imagebind_llm_require "PRETRAINED_PTH" "${2:-}" file "$usage" || return 1
    _imagebind_llm_require "DATA_YAML" "${3:-}" file "$usage" || return 1
    _imagebind_llm_require "OUTPUT_DIR" "${4:-}" any "$usage" || return 1
    local llama_dir="$1" pretrained="$2" data_config="$3" output_dir="$4"
    shift 4
    _imagebind_llm_launch main_finetune.py "$output_dir" \
        --llama_path "$llama_dir" --pretrained_path "$pretrained" --data_config "$data_config" \
        --batch_size 4 --epochs 4 --warmup_epochs 1 \
        --blr 1e-3 --weight_decay 0.02 "$@"
}

# Inside `if`, a failure does not trip a caller's `set -e` before the clean-up below; the status then
# goes back to the caller, whose `set -e` (if any) treats it as any failed command's.
if source "$(dirname "${BASH_SOURCE[0]}")/launch.sh" && _imagebind_llm_finetune "$@"; then
    _imagebind_llm_status=0
else
    _imagebind_llm_status=$?
fi
unset -f _imagebind_llm_finetune _imagebind_llm_launch _imagebind_llm_require
# Leave no variable behind; sourced, return the status to the caller's shell; run, exit with it.
eval "unset _imagebind_llm_status; return $_imagebind_llm_status 2>/dev/null || exit $_imagebind_llm_status"
