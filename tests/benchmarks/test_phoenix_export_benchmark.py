"""benchmarks/phoenix_export.py at smoke size, against a real `agentledger up` exporting to a real Phoenix:
every span sent reaches ClickHouse and Phoenix through agentledger, and Phoenix directly; the rates and the
ratio are printed (never asserted on)."""

from __future__ import annotations

import re

import pytest

from tests.benchmarks.running import run_benchmark
from tests.conftest import phoenix_command

RATE = r"[0-9]+"


@pytest.mark.slow
def test_the_phoenix_export_benchmark_runs_at_smoke_size_and_every_span_arrives_everywhere() -> None:
    output = run_benchmark("phoenix_export.py", "--smoke", "--phoenix-bin", phoenix_command())

    lines = output.splitlines()
    assert re.fullmatch(rf"repeat 1: 200 spans; ClickHouse via agentledger {RATE}/s, Phoenix via agentledger"
                        rf" {RATE}/s, Phoenix direct {RATE}/s", lines[0]), lines  # fmt: skip
    assert lines[1] == (
        "spans sent 200: in ClickHouse 200, in Phoenix through agentledger 200;"
        " sent to Phoenix directly 200: stored 200"
    )
    assert re.fullmatch(rf"median spans/s queryable: ClickHouse {RATE}, Phoenix through agentledger {RATE},"
                        rf" Phoenix direct {RATE}; ratio through/direct [0-9.]+", lines[-1]), lines  # fmt: skip
