"""benchmarks/has_violations.py at smoke size: the filtered listing answers exactly the violating runs among
the newest it audits (the benchmark asserts each answer), and it prints p50/p95 and the ratio at both sizes."""

from __future__ import annotations

import re

from tests.benchmarks.running import run_benchmark

TIMING = r"p50\s+[0-9.]+ ms   p95\s+[0-9.]+ ms"


def test_the_has_violations_benchmark_runs_at_smoke_size() -> None:
    output = run_benchmark("has_violations.py", "--smoke")
    lines = output.splitlines()

    sections = [index for index, line in enumerate(lines) if line.startswith("== ")]
    assert [lines[index] for index in sections] == [
        "== 3,200 spans stored (100 runs, 1 in 10 violating), warm",
        "== 6,400 spans stored (200 runs, 1 in 10 violating), warm",
    ]
    for index, (examined, listed) in zip(sections, ((100, 10), (200, 20)), strict=True):
        assert lines[index + 1] == f"each request audits the newest {examined} runs and lists {listed}"
        assert re.fullmatch(rf"GET /v1/runs\?has_violations=true\s+{TIMING}", lines[index + 2]), lines[index + 2]
        assert re.fullmatch(rf"  one audit per run \(5 reads each\)\s+{TIMING}", lines[index + 3]), lines[index + 3]
        assert re.fullmatch(r"set-based vs per-run \(p50\): [0-9.]+x faster", lines[index + 4]), lines[index + 4]
