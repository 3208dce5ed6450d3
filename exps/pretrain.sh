# Pre-train the bridge, prefix and gates on image-caption data.
#   . exps/pretrain.sh LLAMA_DIR DATA_YAML OUTPUT_DIR [extra main_pretrain.py flags ...]
# Runs in the background on all visible GPUs (NPROC_PER_NODE overrides; NNODES, NODE_RANK,
# MASTER_ADDR, MASTER_PORT for several nodes), logging to OUTPUT_DIR/output.log; FOREGROUND=1 runs
# it attached and returns its status. Launching again on the same OUTPUT_DIR resumes.
# Defaults are the published recipe; flags given after OUTPUT_DIR override them.

_imagebind_llm_pretrain() {
    local usage=". exps/pretrain.sh LLAMA_DIR DATA_YAML OUTPUT_DIR [flags ...]"
    _imagebind_llm_require "LLAMA_DIR" "${1:-}" dir "$usage" || return 1
    _imagebind_llm_require "DATA_YAML" "${2:-}" file "$usage" || return 1
    _imagebind_llm_require "OUTPUT_DIR" "${3:-}" any "$usage" || return 1
    local llama_dir="$1" data_config="$2" output_dir="$3"
    shift 3
    _imagebind_llm_launch main_pretrain.py "$output_dir" \
        --llama_path "$llama_dir" --data_config "$data_config" \
        --batch_size 4 --epochs 150 --split_epoch 50 --warmup_epochs 5 \
        --blr 1e-4 --weight_decay 0.05 "$@"
}

# Inside `if`, a failure does not trip a caller's `set -e` before the clean-up below; the status then
# goes back to the caller, whose `set -e` (if any) treats it as any failed command's.
if source "$(dirname "${BASH_SOURCE[0]}")/launch.sh" && _imagebind_llm_pretrain "$@"; then
    _imagebind_llm_status=0
else
    _imagebind_llm_status=$?
fi
unset -f _imagebind_llm_pretrain _imagebind_llm_launch _imagebind_llm_require
# Leave no variable behind; sourced, return the status to the caller's shell; run, exit with it.
eval "unset _imagebind_llm_status; return $_imagebind_llm_status 2>/dev/null || exit $_imagebind_llm_status"
