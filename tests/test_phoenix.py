"""`agentledger up --phoenix`: a local Arize Phoenix started with the service, wired in as an exporter and as
the target of timeline links, stopped with it; without a `phoenix` command, a sentence and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    free_port,
    phoenix_command,
    send_reviewed_run,
    start_service,
    wait_for_phoenix_spans,
    wait_for_timeline,
)

pytestmark = pytest.mark.slow


def test_up_with_phoenix_starts_a_local_phoenix_exports_to_it_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    phoenix_bin = str(Path(phoenix_command()).parent)
    service = start_service(
        tmp_path / "data", "--phoenix", "--phoenix-port", str(port),
        env_overrides={"PATH": f"{phoenix_bin}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    try:
        send_reviewed_run(service.collector_url, "run_up_phoenix_0001")
        timeline = wait_for_timeline(service.api_url, "run_up_phoenix_0001", 7)
        trace_id = timeline["entries"][0]["trace_id"]
        spans = wait_for_phoenix_spans(f"http://127.0.0.1:{port}", "agentledger", trace_id, 7)
    finally:
        exit_code = service.stop()
    assert exit_code == 0
    assert len(spans) == 7
    assert {entry["phoenix_url"] for entry in timeline["entries"]} == {
        f"http://127.0.0.1:{port}/redirects/spans/{entry['span_id']}" for entry in timeline["entries"]
    }
    assert (tmp_path / "data" / "phoenix").is_dir()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_up_with_phoenix_but_no_phoenix_command_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    env["PATH"] = "/usr/bin:/bin"
    done = subprocess.run(
        [sys.executable, "-m", "agentledger", "up", "--phoenix", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "agentledger up: --phoenix needs the `phoenix` command (Arize Phoenix), which is neither on PATH nor in"
        " ./.phoenix-venv/bin/phoenix: install it with `bash scripts/phoenix_venv.sh` or `pip install arize-phoenix`"
    )
