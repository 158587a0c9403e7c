#!/usr/bin/env bash
# Installs agentledger with its dev tools into .venv, then runs ruff, mypy and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh "[dev]"
# The responder page is tested in Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser build); CI runs on a fresh machine as root.
command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
# The Phoenix tests start a real Arize Phoenix; it lives in its own venv (see scripts/phoenix_venv.sh).
bash scripts/phoenix_venv.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy -p agentledger
echo "== pytest"
exec .venv/bin/pytest "$@"
