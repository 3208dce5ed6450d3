#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes .venv, installs the pinned packages, runs pytest.
# Usage: bash tests/run.sh [PYTEST_ARGS ...]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
python="$(bash exps/setup_venv.sh tests/requirements.txt | tail -n 1)"
# The caption metrics (pycocoevalcap's tokenizer and METEOR) run Java: install a headless one where
# it is missing (CI runs as root), or name the one command to run.
if ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing a headless Java for the caption metrics (apt-get install default-jre-headless)" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >&2
    else
        echo "tests/run.sh: the caption metrics need Java; install it with: sudo apt-get install -y default-jre-headless" >&2
        exit 1
    fi
fi

status=0
"$python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    # pytest's "no tests collected": a suite that tests nothing must not pass.
    echo "tests/run.sh: pytest collected no tests; failing" >&2
    exit 1
fi
exit "$status"
