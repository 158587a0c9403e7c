"""A really full disk: the spool on a 3 MiB tmpfs (in a private mount namespace) fills during a storage
outage. The collector must answer 503 with Retry-After, never 200 for what it could not write, take spans
again once the exporter drained the backlog, and store every acknowledged span exactly once, across a
kill -9 on the full disk too."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT, free_port, otlp_request_body

APP = Path(__file__).with_name("spool_disk_full_app.py")
PROTOBUF = {"Content-Type": "application/x-protobuf"}
SPANS_PER_REQUEST = 50

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare for a private tmpfs"
    ),
]


@dataclass
class Sender:
    url: str
    acknowledged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def send(self, http: httpx.Client, run_id: str) -> int:
        response = http.post(f"{self.url}/v1/traces", content=otlp_request_body(run_id, SPANS_PER_REQUEST),
                             headers=PROTOBUF)  # fmt: skip
        self.statuses.append(response.status_code)
        if response.status_code == 200:
            self.acknowledged.append(run_id)
        else:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            self.refused.append(run_id)
        return response.status_code

    def fill(self, http: httpx.Client, prefix: str) -> None:
        """Sends until the full disk refused ten requests in a row."""
        in_a_row = 0
        for index in range(2000):
            in_a_row = in_a_row + 1 if self.send(http, f"{prefix}_{index}") == 503 else 0
            if in_a_row == 10:
                return
        raise AssertionError("the 3 MiB spool never filled")


def _start(data_dir: Path, spool_dir: Path, port: int, *phases: str) -> subprocess.Popen[str]:
    """The collector in a private mount namespace whose spool folder is a fresh 3 MiB tmpfs; each phase is
    one run of the app (the tmpfs lives until the last ends)."""
    runs = " ; ".join(f'"$1" "$2" "$3" "$4" "$5" {phase}' for phase in phases)
    script = f'mount -t tmpfs -o size=3m tmpfs "$4" && {runs}'
    return subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, str(APP), str(data_dir), str(spool_dir),
         str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> None:
    """Kills the namespace's shell and every run of the app in it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _message(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the collector exited ({process.poll()})"
    message: dict[str, Any] = json.loads(line)
    return message


def _command(process: subprocess.Popen[str], command: str) -> None:
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


def _write_errors(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics").text
    lines = [
        line for line in metrics.splitlines() if line.startswith('agentledger_spool_write_errors_total{error="ENOSPC"}')
    ]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_full_disk_answers_503_then_takes_spans_again_and_stores_each_acknowledged_span_once(
    tmp_path: Path,
) -> None:
    spool_dir, port = tmp_path / "spool", free_port()
    spool_dir.mkdir()
    process = _start(tmp_path / "data", spool_dir, port, "--outage")
    sender = Sender(f"http://127.0.0.1:{port}")
    try:
        _message(process)
        with httpx.Client(timeout=30) as http:
            sender.fill(http, "outage")
            assert _write_errors(sender.url) >= 10
            acknowledged_while_down = len(sender.acknowledged)
            _command(process, "restore")
            _message(process)
            # The exporter drains and the spool releases segments: the same process takes spans again.
            for index in range(2000):
                if sender.send(http, f"after_{index}") == 200:
                    break
            else:
                raise AssertionError("the collector never took spans again")
            for index in range(5):
                assert sender.send(http, f"more_{index}") == 200
        _command(process, "finish")
        result = _message(process)
    finally:
        _stop(process)

    assert acknowledged_while_down >= 20  # the spool took a real backlog before the disk filled
    assert sender.statuses.count(503) >= 10
    stored = result["stored"]
    assert {run: stored.get(run, 0) for run in sender.acknowledged} == dict.fromkeys(
        sender.acknowledged, SPANS_PER_REQUEST
    )  # every acknowledged span, once
    assert {run: stored[run] for run in sender.refused if run in stored} == {}  # refused writes were rolled back
    assert result["rows"] == result["distinct"] == len(sender.acknowledged) * SPANS_PER_REQUEST
    assert (result["quarantined"], result["torn_tails"], result["quarantine_files"]) == (0, 0, [])
    print(
        f"\nfull disk: acknowledged {len(sender.acknowledged)} requests ({acknowledged_while_down} while storage was"
        f" down), refused {len(sender.refused)} (503);"
        f" stored {result['rows']} spans of {len(sender.acknowledged) * SPANS_PER_REQUEST} acknowledged"
    )


def test_a_kill_on_the_full_disk_loses_no_acknowledged_span_after_restart(tmp_path: Path) -> None:
    spool_dir, port = tmp_path / "spool", free_port()
    spool_dir.mkdir()
    process = _start(tmp_path / "data", spool_dir, port, "--outage", "")
    sender = Sender(f"http://127.0.0.1:{port}")
    try:
        first_pid = _message(process)["ready"]
        with httpx.Client(timeout=30) as http:
            sender.fill(http, "before_kill")
            os.kill(first_pid, signal.SIGKILL)  # on the full disk, storage still down
            _message(process)  # the second run: storage back, recovering the spool the first one filled
            for index in range(2000):
                if sender.send(http, f"after_restart_{index}") == 200:
                    break
            else:
                raise AssertionError("the restarted collector never took spans")
        _command(process, "finish")
        result = _message(process)
    finally:
        _stop(process)

    stored = result["stored"]
    assert {run: stored.get(run, 0) for run in sender.acknowledged} == dict.fromkeys(
        sender.acknowledged, SPANS_PER_REQUEST
    )
    assert {run: stored[run] for run in sender.refused if run in stored} == {}
    assert result["rows"] == result["distinct"] == len(sender.acknowledged) * SPANS_PER_REQUEST
    assert result["quarantined"] == 0
    print(
        f"\nkill -9 on a full disk: acknowledged {len(sender.acknowledged)}, refused {len(sender.refused)};"
        f" stored {result['rows']} spans of {len(sender.acknowledged) * SPANS_PER_REQUEST} acknowledged,"
        f" quarantined {result['quarantined']}, torn tails {result['torn_tails']}"
    )
