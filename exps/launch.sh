# Shared by exps/pretrain.sh and exps/finetune.sh; sourced, never run.
#
# Those launchers are run with `.` (sourced) from the user's shell, so everything here lives in one
# function with `local` variables, returns instead of exiting, and changes no option, variable or
# directory of the caller. The function is removed again by the launcher that sourced this file.

_imagebind_llm_launch() {
    # Usage: _imagebind_llm_launch ENTRY_POINT OUTPUT_DIR [ARGS FOR THE ENTRY POINT ...]
    local entry="$1" output_dir="$2"
    shift 2
    # `CDPATH= cd`: the caller's CDPATH would send a relative cd elsewhere and make it print the folder.
    local repo_root
    repo_root="$(CDPATH= cd -- "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    # The interpreter: $PYTHON, else the project's .venv (bash exps/setup_venv.sh makes it), else python3.
    local python="${PYTHON:-}"
    if [ -z "$python" ]; then
        if [ -x "$repo_root/.venv/bin/python" ]; then python="$repo_root/.venv/bin/python"; else python=python3; fi
    fi
    local fix="run 'bash exps/setup_venv.sh' (the launchers then use .venv) or set PYTHON to an interpreter with the requirements"
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "launcher: Python interpreter '$python' not found: $fix" >&2
        return 1
    fi
    # An interpreter without torch fails here, in the terminal, before anything starts (finding the
    # package takes milliseconds; importing torch, seconds).
    if ! "$python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null; then
        echo "launcher: '$python' cannot import torch: $fix" >&2
        return 1
    fi
    # One process per visible GPU, one CPU process where there is none.
    local nproc="${NPROC_PER_NODE:-}"
    if [ -z "$nproc" ]; then
        nproc="$("$python" -c 'import torch; print(max(torch.cuda.device_count(), 1))' 2>/dev/null)" || {
            echo "launcher: '$python' cannot import torch: $fix" >&2
            return 1
        }
    fi
    echo "Python: $python"
    local -a rendezvous
    if [ "${NNODES:-1}" -gt 1 ]; then
        if [ -z "${MASTER_ADDR:-}" ] || [ -z "${NODE_RANK:-}" ]; then
            echo "launcher: NNODES=$NNODES needs MASTER_ADDR (the first node's address) and NODE_RANK (this node's index) set" >&2
            return 1
        fi
        rendezvous=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}")
    elif [ -n "${MASTER_PORT:-}" ]; then
        rendezvous=(--nnodes 1 --node_rank 0 --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "$MASTER_PORT")
    else
        # One node: let torchrun pick a free port, so that two jobs on one machine do not collide.
        rendezvous=(--standalone)
    fi

    # One job per output folder: refuse, here in the terminal, a folder a live job holds. (The job's
    # rank 0 takes the lock itself; on the other nodes of a multi-node job it is their own job's.)
    if [ "${NODE_RANK:-0}" = 0 ]; then
        "$python" "$repo_root/exps/supervise.py" --check_lock "$output_dir" || return 1
    fi
    # One process on one node: the worker runs alone, without torchrun (see below).
    local one_worker=0
    if [ "$nproc" = 1 ] && [ "${NNODES:-1}" = 1 ]; then one_worker=1; fi
    # Pre-flight, attached: the run's own checks before it loads any weight (flags, the data config
    # and its first entries, the LLaMA folder, ImageBind and checkpoint files, resuming), by the
    # entry point's --dry_run. A problem is one line here, and nothing starts. One process attached
    # to the terminal is its own pre-flight: the run makes these checks before it reads a weight,
    # and its one-line errors come here anyway; a second interpreter would only cost seconds.
    if [ "${FOREGROUND:-0}" != 1 ] || [ "$one_worker" = 0 ]; then
        echo "Checking the run (--dry_run) ..."
        WORLD_SIZE=$((nproc * ${NNODES:-1})) "$python" "$repo_root/$entry" --dry_run --output_dir "$output_dir" \
            --resume auto "$@" || return 1
    fi
    mkdir -p "$output_dir" || { echo "launcher: cannot create the output folder $output_dir" >&2; return 1; }
    output_dir="$(CDPATH= cd -- "$output_dir" && pwd)"

    local log_file="$output_dir/output.log"
    # exps/supervise.py runs the job: it passes stop signals to the workers, which save a checkpoint
    # and exit 0, and keeps torchrun's failure report out of the log's last lines (see its docstring).
    # Run from the caller's folder, so that relative paths mean what they meant where they were typed.
    local -a command=("$python" -u "$repo_root/exps/supervise.py" --log "$log_file") job
    if [ "$one_worker" = 1 ]; then
        # One process: the worker alone, with the variables torchrun would give it (torchrun's own
        # start, importing torch, would cost seconds and add nothing).
        command+=(--one_worker)
        job=(env RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 LOCAL_WORLD_SIZE=1 "$python" -u "$repo_root/$entry")
    else
        job=("$python" -u -m torch.distributed.run "${rendezvous[@]}" --nproc_per_node "$nproc" "$repo_root/$entry")
    fi
    job+=(--output_dir "$output_dir" --resume auto "$@")
    echo "[$(date '+%Y-%m-%d %H:%M:%S')] ${job[*]}" >> "$log_file"

    if [ "${FOREGROUND:-0}" = 1 ]; then
        "${command[@]}" --echo -- "${job[@]}"
        return
    fi
    # In the background, detached from the terminal: the job survives the shell closing, and the
    # subshell keeps it out of the caller's job table.
    local pid
    pid="$({ nohup setsid "${command[@]}" -- "${job[@]}" >> "$log_file" 2>&1 < /dev/null & echo $!; })" || return 1
    echo "$pid" >| "$output_dir/launcher.pid"  # >|: a relaunch overwrites it even under the caller's noclobber
    echo "Started $entry in the background (process $pid)."
    echo "Log:    $log_file"
    echo "Follow: tail -f '$log_file'"
    echo "Stop:   kill $pid   (it saves a checkpoint first; launching again on $output_dir resumes)"
}

_imagebind_llm_require() {
    # Usage: _imagebind_llm_require WHAT VALUE KIND(file|dir|any) USAGE
    if [ -z "$2" ]; then
        echo "launcher: missing $1. Usage: $4" >&2
        return 1
    fi
    if [ "$3" = file ] && [ ! -f "$2" ]; then
        echo "launcher: $1 '$2' is not a file" >&2
        return 1
    fi
    if [ "$3" = dir ] && [ ! -d "$2" ]; then
        echo "launcher: $1 '$2' is not a folder" >&2
        return 1
    fi
}
