#!/usr/bin/env bash
# Installs Arize Phoenix (the server our Phoenix tests and `agentledger up --phoenix` start) into its own
# venv, .phoenix-venv, once: it pulls ~800 MB of dependencies (openai, anthropic, botocore, its own pins of
# fastapi/starlette/protobuf) that must not constrain agentledger's own environment.
set -euo pipefail
cd "$(dirname "$0")/.."
version="20.26.1"
if [ -x .phoenix-venv/bin/phoenix ] && [ "$(cat .phoenix-venv/.version 2>/dev/null)" = "$version" ]; then
  exit 0
fi
python_bin="${AGENTLEDGER_PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
rm -rf .phoenix-venv
"$python_bin" -m venv .phoenix-venv
.phoenix-venv/bin/python -m pip install --quiet --disable-pip-version-check "arize-phoenix==${version}"
echo "$version" > .phoenix-venv/.version
