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
    assert re.search(r"^median RSS while ingesting \(median of the runs\): \d+ MiB$", output, re.MULTILINE), output


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
    assert re.search(rf"^  agentledger run 1: .* {NUMBER} MiB peak\s+{NUMBER} MiB median RSS$", output, re.MULTILINE)
    assert re.search(r"^  agentledger run 1 at the largest RSS sample: \d+ MiB anonymous, \d+ MiB mapped files$",
                     output, re.MULTILINE), output  # fmt: skip


@pytest.mark.slow
def test_the_ingest_benchmark_sustained_mode_runs_for_seconds_and_reports_memory_and_export_latency() -> None:
    output = run_benchmark("ingest.py", "--sustained-rate", "1000", "--sustained-minutes", "0.05",
                           "--sample-seconds", "1", "--pool-spans", "1000", "--spans-per-request", "250",
                           "--phoenix-bin", "")  # fmt: skip

    # 1000 spans/s for 3 s in requests of 250 spans: 12 requests, each pooled body re-sent under fresh ids.
    assert output.startswith("sustained: 1000 spans/s for 0.05 min (12 requests of ~250 spans, one every 250 ms)")
    assert "  sustained spans: 3000 sent, 3000 acknowledged, 3000 stored\n" in output, output
    assert "refused requests" not in output, output
    assert re.search(rf"^  RSS MiB \(\d+ samples\): start {NUMBER}, median {NUMBER}, max {NUMBER}, last {NUMBER},"
                     rf" slope [+-]{NUMBER} MiB/min", output, re.MULTILINE), output  # fmt: skip
    for gauge in ("agentledger_arrow_allocated_bytes", "agentledger_clickhouse_tracked_memory_bytes"):
        assert re.search(rf"^  {gauge} MiB: median \d+, max \d+, last \d+$", output, re.MULTILINE), output
    latency = re.search(r"^  export latency \(agentledger_export_seconds, (\d+) batches, mean [0-9.]+ s\): p50 ",
                        output, re.MULTILINE)  # fmt: skip
    assert latency is not None and int(latency[1]) >= 1, output
    buckets = re.search(r"^  export latency buckets \(le: batches\): (.*)$", output, re.MULTILINE)
    assert buckets is not None and buckets[1].endswith(f"+Inf:{latency[1]}"), output
