"""Phoenix export benchmark: the same agent spans sent to `agentledger up` (exporting to ClickHouse and to
Phoenix) and, in the same run, straight to the same Phoenix server; prints medians and the ratio.

    .venv/bin/python benchmarks/phoenix_export.py --spans 2000 --repeats 3 --phoenix-bin .phoenix-venv/bin/phoenix
    .venv/bin/python benchmarks/phoenix_export.py --smoke     # seconds, as the tests run it

Figures: spans/s until all are queryable in ClickHouse (through agentledger), spans/s until all are queryable
in Phoenix through agentledger's exporter, and spans/s until queryable in Phoenix when sent to it directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_spans import request_bodies
from harness import exported_spans as exported_to
from harness import free_port, phoenix_command, start_up, wait_http, wait_until
from harness import phoenix_span_count as phoenix_count


def send(url: str, bodies: list[tuple[int, bytes]], headers: dict[str, str]) -> int:
    sent = 0
    with httpx.Client(timeout=60) as client:
        for count, body in bodies:
            response = client.post(url, content=body, headers={"content-type": "application/x-protobuf", **headers})
            response.raise_for_status()
            sent += count
    return sent


def clickhouse_has(collector_url: str, count: int) -> Callable[[], bool]:
    return lambda: exported_to(collector_url, "clickhouse") >= count


def phoenix_has(phoenix_url: str, project: str, count: int) -> Callable[[], bool]:
    return lambda: phoenix_count(phoenix_url, project) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spans-per-request", type=int, default=100)
    parser.add_argument("--phoenix-bin", default=phoenix_command(), help="the `phoenix` command (arize-phoenix)")
    parser.add_argument("--wait-timeout", type=float, default=600, help="seconds to wait for spans to be queryable")
    parser.add_argument("--smoke", action="store_true", help="200 spans, one repeat: checks it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.spans, args.repeats, args.spans_per_request = 200, 1, 100
    if not args.phoenix_bin:
        parser.error("no `phoenix` command: run `bash scripts/phoenix_venv.sh` or pass --phoenix-bin")
        args.wait_timeout = min(args.wait_timeout, 120)

    workdir = Path(tempfile.mkdtemp(prefix="phoenix-export-bench-"))
    phoenix_port = free_port()
    phoenix_url = f"http://127.0.0.1:{phoenix_port}"
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(workdir / "phoenix"), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(phoenix_port), "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
           "PHOENIX_MAX_SPANS_QUEUE_SIZE": str(10**7)}  # fmt: skip
    workdir.joinpath("logs").mkdir()
    phoenix_log = workdir / "logs" / "phoenix.log"
    with phoenix_log.open("wb") as log:
        phoenix = subprocess.Popen([args.phoenix_bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    started = start_up(
        workdir,
        f"exporters:\n  clickhouse: {{}}\n  phoenix: {{endpoint: '{phoenix_url}', project: via-agentledger,"
        " sync: {enabled: false}}\nservice: {pipelines: {traces: {exporters: [clickhouse, phoenix]}}}\n",
        "logs/agentledger.log",
    )
    up, up_log, collector_url = started.process, started.log, started.collector_url
    timeout = args.wait_timeout
    try:
        wait_http(f"{phoenix_url}/healthz", 180, phoenix, phoenix_log)
        wait_http(f"{collector_url}/healthz", 120, up, up_log)
        clickhouse_rates, through_rates, direct_rates = [], [], []
        total = direct_total = 0
        for repeat in range(args.repeats):
            bodies = list(request_bodies(args.spans, args.spans_per_request, seed=100 + repeat))
            began = time.perf_counter()
            total += send(f"{collector_url}/v1/traces", bodies, {})
            expected = total
            wait_until(clickhouse_has(collector_url, expected), "spans in ClickHouse", timeout, 0.25)
            clickhouse_seconds = time.perf_counter() - began
            wait_until(phoenix_has(phoenix_url, "via-agentledger", expected), "Phoenix via agentledger", timeout, 0.25)
            sent = sum(count for count, _ in bodies)
            # ClickHouse: from the first request until exported; Phoenix: until queryable there.
            clickhouse_rates.append(sent / clickhouse_seconds)
            through_rates.append(sent / (time.perf_counter() - began))

            direct_project = f"direct-{repeat}"
            # The same spans with other ids: Phoenix ignores a span id it has stored already.
            bodies = list(request_bodies(args.spans, args.spans_per_request, seed=1000 + repeat))
            began = time.perf_counter()
            direct_total += send(f"{phoenix_url}/v1/traces", bodies, {"x-project-name": direct_project})
            wait_until(phoenix_has(phoenix_url, direct_project, sent), "spans sent to Phoenix directly", timeout, 0.25)
            direct_rates.append(sent / (time.perf_counter() - began))
            print(f"repeat {repeat + 1}: {sent} spans; ClickHouse via agentledger {clickhouse_rates[-1]:.0f}/s,"
                  f" Phoenix via agentledger {through_rates[-1]:.0f}/s,"
                  f" Phoenix direct {direct_rates[-1]:.0f}/s")  # fmt: skip
        direct_stored = sum(phoenix_count(phoenix_url, f"direct-{repeat}") for repeat in range(args.repeats))
        print(f"spans sent {total}: in ClickHouse {exported_to(collector_url, 'clickhouse')}, in Phoenix through"
              f" agentledger {phoenix_count(phoenix_url, 'via-agentledger')};"
              f" sent to Phoenix directly {direct_total}: stored {direct_stored}")  # fmt: skip
        through, direct = statistics.median(through_rates), statistics.median(direct_rates)
        print(f"\nmedian spans/s queryable: ClickHouse {statistics.median(clickhouse_rates):.0f},"
              f" Phoenix through agentledger {through:.0f}, Phoenix direct {direct:.0f};"
              f" ratio through/direct {through / direct:.2f}")  # fmt: skip
    finally:
        for process in (up, phoenix):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
