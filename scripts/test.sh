#!/usr/bin/env bash
# Installs agentledger with its dev tools into .venv, then runs ruff, mypy and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh "[dev]"
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy -p agentledger
echo "== pytest"
exec .venv/bin/pytest "$@"
