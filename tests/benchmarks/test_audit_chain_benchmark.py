"""benchmarks/audit_chain.py runs at a smoke size and prints each figure (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "audit_chain.py"


def test_the_audit_chain_benchmark_prints_v1_and_v2_costs() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--spans", "200", "--batch", "100", "--run-ids", "5", "--runs", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("audit chain CPU cost per 100k spans (200 spans measured in batches of 100, 5 runs,"
                        " median of 1)")  # fmt: skip
    labels = [re.sub(r": [0-9.]+( s)?$", "", line) for line in lines[1:]]
    assert labels == ["digests v1", "digests v2", "v1 digest + link + signature",
                      "v2 digest + link + signature + checkpoint", "v2/v1"]  # fmt: skip
