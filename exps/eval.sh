# Evaluate a checkpoint on the benchmarks of an evaluation YAML (evaluation/eval_config.py).
#   . exps/eval.sh CHECKPOINT LLAMA_DIR EVAL_YAML OUTPUT_DIR --imagebind_path ckpts/imagebind_huge.pth [flags ...]
# Runs in the background on all visible GPUs, each answering its share of the samples (NPROC_PER_NODE
# overrides), logging to OUTPUT_DIR/output.log; FOREGROUND=1 runs it attached. The results are
# OUTPUT_DIR/metrics.json and metrics.md; launching again on the same OUTPUT_DIR resumes, skipping
# what was answered. Flags after OUTPUT_DIR go to main_eval.py (--help lists them).

_imagebind_llm_eval() {
    local usage=". exps/eval.sh CHECKPOINT LLAMA_DIR EVAL_YAML OUTPUT_DIR --imagebind_path PTH [flags ...]"
    _imagebind_llm_require "CHECKPOINT" "${1:-}" file "$usage" || return 1
    _imagebind_llm_require "LLAMA_DIR" "${2:-}" dir "$usage" || return 1
    _imagebind_llm_require "EVAL_YAML" "${3:-}" file "$usage" || return 1
    _imagebind_llm_require "OUTPUT_DIR" "${4:-}" any "$usage" || return 1
    local checkpoint="$1" llama_dir="$2" eval_config="$3" output_dir="$4"
    shift 4
    _imagebind_llm_launch main_eval.py "$output_dir" \
        --checkpoint "$checkpoint" --llama_dir "$llama_dir" --eval_config "$eval_config" "$@"
}

# Inside `if`, a failure does not trip a caller's `set -e` before the clean-up below; the status then
# goes back to the caller, whose `set -e` (if any) treats it as any failed command's.
if source "$(dirname "${BASH_SOURCE[0]}")/launch.sh" && _imagebind_llm_eval "$@"; then
    _imagebind_llm_status=0
else
    _imagebind_llm_status=$?
fi
unset -f _imagebind_llm_eval _imagebind_llm_launch _imagebind_llm_require
# Leave no variable behind; sourced, return the status to the caller's shell; run, exit with it.
eval "unset _imagebind_llm_status; return $_imagebind_llm_status 2>/dev/null || exit $_imagebind_llm_status"
