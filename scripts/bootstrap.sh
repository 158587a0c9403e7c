#!/usr/bin/env bash
# Creates .venv with Python >= 3.11 and installs agentledger (plus extras given as $1) into it.
# Sourced by up.sh and test.sh so both install the same way.
set -euo pipefail
extras="${1:-}"
python_bin="${AGENTLEDGER_PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "agentledger needs Python 3.11 or newer; set AGENTLEDGER_PYTHON to one." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# strict editable mode: the package maps top-level folders into the agentledger namespace, and only
# a link tree (not an import hook) lets mypy and every tool see that mapping.
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --config-settings editable_mode=strict -e ".${extras}"
