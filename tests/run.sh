#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes .venv, installs the pinned packages, runs pytest.
# Usage: bash tests/run.sh [PYTEST_ARGS ...]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
python="$(bash exps/setup_venv.sh tests/requirements.txt | tail -n 1)"

status=0
"$python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    # pytest's "no tests collected": a suite that tests nothing must not pass.
    echo "tests/run.sh: pytest collected no tests; failing" >&2
    exit 1
fi
exit "$status"
