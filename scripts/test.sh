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
# One worker per core, a test file per worker (module-scoped Phoenix and browser start once per file).
# Each worker is its own process, so each has its own chDB folder (chDB allows one per process).
# The slowest tests are listed at the end: with a file per worker, one long file sets the suite's tail.
exec .venv/bin/pytest -n "${AGENTLEDGER_TEST_WORKERS:-auto}" --dist loadfile --durations=15 "$@"
