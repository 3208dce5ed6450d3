#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes .venv, installs the pinned packages, runs pytest.
# Usage: bash tests/run.sh [PYTEST_ARGS ...]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
python="$(bash exps/setup_venv.sh tests/requirements.txt | tail -n 1)"
# System packages the suite needs: Java for the caption metrics (pycocoevalcap's tokenizer and
# METEOR), Debian's Chromium and its driver for the chat app's browser test (Selenium must not
# download a browser). Install the missing ones with apt where we can (CI runs as root), or name
# the one command to run.
missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing ${missing[*]} (apt-get install)" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        echo "tests/run.sh: the suite needs ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
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
