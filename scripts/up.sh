#!/usr/bin/env bash
# Installs agentledger into .venv and runs the main job on the embedded default (chDB in ./.agentledger):
# OTLP collector on :4317/:4318, query API and responder page on :8000, demo traffic sent once started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh ""
exec .venv/bin/agentledger up --demo "$@"
