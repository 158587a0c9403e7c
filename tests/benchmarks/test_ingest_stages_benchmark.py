"""benchmarks/ingest_stages.py at smoke size: every stage of the collector's ingest path runs on the benchmark's
agent spans, and every span ends up stored in chDB and linked in the audit chain."""

from __future__ import annotations

import re

from tests.benchmarks.running import run_benchmark

STAGES = ("parse", "decode", "normalize", "redaction", "spool encode", "spool decode", "  digests (part of export)",
          "export", "total")  # fmt: skip


def test_the_ingest_stages_benchmark_runs_at_smoke_size_and_stores_every_span() -> None:
    lines = run_benchmark("ingest_stages.py", "--smoke").splitlines()

    assert lines[0] == "workload: 1000 spans in 4 requests, 3 MB protobuf, exported 500 at a time"
    assert lines[1].split() == ["stage", "CPU", "s/100k", "spans/s/core", "share"]
    rows = lines[2 : 2 + len(STAGES)]
    assert [row[:28].rstrip() for row in rows] == [stage.rstrip() for stage in STAGES]
    for row in rows:
        assert re.fullmatch(r".{28} +[0-9]+\.[0-9]{2} +([0-9,]+|inf)( +[0-9.]+%)?", row), row
    assert lines[2 + len(STAGES)] == "stored and chained: 1000 spans in each of 1 run(s)"
    figure = re.fullmatch(r"per collector core, these stages \(spans / CPU second\): ([0-9]+) spans/s", lines[-1])
    assert figure is not None and int(figure[1]) > 0, lines[-1]
    assert len(lines) == 4 + len(STAGES)
