"""benchmarks/hostile_requests.py at smoke size: it runs against a real collector and each hostile request
gets the answer the README documents (figures of memory are printed, never asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

ROW = re.compile(r"^(?P<case>[a-z0-9 ]+?)\s+(?P<statuses>(?:\d{3}x\d+,?)+)\s+(?P<accepted>\d+)\s+(?P<refused>\d+)\s")


@pytest.mark.slow
def test_the_hostile_requests_benchmark_runs_at_smoke_size_with_the_documented_answers() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "hostile_requests.py"), "--smoke", "--repeats", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        match["case"]: (match["statuses"], int(match["accepted"]), int(match["refused"]))
        for line in result.stdout.splitlines()
        if (match := ROW.match(line))
    }
    assert rows == {
        "resource amplification": ("413x1", 0, 64),
        "50k spans in one request": ("200x1", 10_000, 2_000),
        "deep attributes": ("200x1", 50, 0),
        "nested past the limit": ("400x1", 0, 1),
        "impossible timestamps": ("200x1", 500, 500),
        "bigger than the spool": ("413x1", 0, 1_000),
    }
    assert (
        "/metrics: refused over the decoded-size budget 64, refused bigger than the spool 1000,"
        " rejected for impossible timestamps 500"
    ) in result.stdout
    assert re.search(r"collector at the end: RSS \d+ MiB, peak \d+ MiB", result.stdout)
