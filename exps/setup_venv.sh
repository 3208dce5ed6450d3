#!/usr/bin/env bash
# Make (or reuse) the project's virtual environment and install the pinned packages.
# Usage: bash exps/setup_venv.sh [EXTRA_REQUIREMENTS_FILE ...]; prints the venv's python on the last line.
# Installs again only when a requirements file changed. VENV overrides the location (default .venv).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo_root/.venv}"
requirements=("$repo_root/requirements.txt" "$@")

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the virtual environment $venv" >&2
    python3 -m venv "$venv"
fi
# One stamp per set of requirement contents: the demo (requirements.txt) and the tests (plus
# tests/requirements.txt) share the venv without reinstalling for each other.
wanted="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.installed-$wanted"
if [ ! -f "$stamp" ]; then
    echo "Installing ${requirements[*]} into $venv (first time: a few minutes)" >&2
    install_args=()
    for file in "${requirements[@]}"; do install_args+=(-r "$file"); done
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${install_args[@]}" >&2
    touch "$stamp"
fi
echo "$venv/bin/python"
