"""benchmarks/ingest.py at smoke size, against a real `agentledger up` and a real Phoenix: every span sent is
acknowledged and stored by both, and the figures and the ratio are printed (never asserted on)."""

from __future__ import annotations

import re

import pytest

from tests.benchmarks.running import run_benchmark
from tests.conftest import phoenix_command

NUMBER = r"[0-9.]+"


@pytest.mark.slow
def test_the_ingest_benchmark_runs_at_smoke_size_and_both_sides_store_every_span() -> None:
    output = run_benchmark("ingest.py", "--smoke", "--phoenix-bin", phoenix_command())

    assert re.match(r"workload: 2000 spans in 4 requests, \d+ MB protobuf, 4 senders, spool fsync=always", output)
    assert "refused requests" not in output, output
    assert "  agentledger run 1 spans: 2000 sent, 2000 acknowledged, 2000 stored\n" in output
    phoenix = re.search(r"^  phoenix spans: (\d+) sent, (\d+) acknowledged, (\d+) stored$", output, re.MULTILINE)
    assert phoenix is not None, output
    assert int(phoenix[1]) >= 200 and phoenix[1] == phoenix[2] == phoenix[3], phoenix[0]
    for name in ("agentledger \\(median\\)", "phoenix \\(200 spans\\)"):
        assert re.search(rf"^{name}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", output, re.MULTILINE), output
    assert re.search(rf"^ratio agentledger/phoenix: acked {NUMBER}x, stored {NUMBER}x, CPU per span {NUMBER}x less$",
                     output, re.MULTILINE), output  # fmt: skip
    assert re.search(r"^per collector core \(stored spans / CPU second\): \d+ spans/s$", output, re.MULTILINE)


@pytest.mark.slow
def test_the_ingest_benchmark_measures_bytes_per_span_on_disk_at_smoke_size() -> None:
    output = run_benchmark("ingest.py", "--smoke", "--disk", "--phoenix-bin", "")

    disk = re.search(
        r"^  on disk \(system\.parts, merged\): (\d+) spans; spans table (\d+) B/span \((\d+) B/span uncompressed\);"
        r" all tables (\d+) B/span$", output, re.MULTILINE,
    )  # fmt: skip
    assert disk is not None, output
    assert disk[1] == "2000"
    # Compressed smaller than uncompressed; every table together more than spans alone (chain, index).
    assert 0 < int(disk[2]) < int(disk[3]) and int(disk[4]) > int(disk[2])
    assert re.search(r"^    spans\s+2000 rows\s+\d+ bytes$", output, re.MULTILINE), output
    assert re.search(r"^    audit_chain\s+\d+ rows\s+\d+ bytes$", output, re.MULTILINE), output
    assert "phoenix: not run" in output
