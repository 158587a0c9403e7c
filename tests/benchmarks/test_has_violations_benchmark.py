"""benchmarks/has_violations.py at smoke size: the listing answered from the findings index lists exactly the
newest violating runs, before and after runs change since the indexer's pass, and so does the per-request
audit it replaced (the benchmark asserts each answer); it prints the pass and p50/p95 at both sizes."""

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
    # The second pass audits the 100 new runs and the 20 changed after the first pass.
    for index, (runs, indexed, listed) in zip(sections, ((100, 100, 10), (200, 120, 20)), strict=True):
        assert re.fullmatch(rf"indexer pass: {indexed} runs audited and stored in [0-9.]+ s \([0-9,]+ runs/s\)",
                            lines[index + 1]), lines[index + 1]  # fmt: skip
        assert lines[index + 2] == (
            f"the listing lists the newest {listed} of {listed} violating runs; before, each request audited"
            f" the newest {runs} runs and listed {listed}"
        )
        assert re.fullmatch(rf"GET /v1/runs\?has_violations=true\s+{TIMING}", lines[index + 3]), lines[index + 3]
        assert re.fullmatch(rf"  with 20 runs changed since the pass\s+{TIMING}", lines[index + 4]), lines[index + 4]
        assert re.fullmatch(rf"  before: audit per request \(newest 500 runs\)\s+{TIMING}", lines[index + 5])
        assert re.fullmatch(r"indexed vs per-request audit \(p50\): [0-9.]+x faster", lines[index + 6]), lines[
            index + 6
        ]
