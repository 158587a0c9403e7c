"""Ingest benchmark: realistic agent spans over OTLP/HTTP protobuf into `agentledger up` (spool on) and,
in the same run, into Arrow Phoenix; prints medians and the ratio.

    .venv/bin/python benchmarks/ingest.py --spans 200000 --repeats 3 --phoenix-bin /path/to/phoenix
    .venv/bin/python benchmarks/ingest.py --smoke --phoenix-bin .phoenix-venv/bin/phoenix   # seconds, as the tests

Figures: spans/s acknowledged, spans/s until stored (queryable), collector CPU seconds per 100k spans,
collector peak RSS. The sender pre-encodes every request and uses several keep-alive connections so it
is not the bottleneck. `--profile` samples the collector with py-spy and prints where the time goes.
`--disk` also prints bytes per stored span on disk (system.parts of the last run's database, after merging),
for the README's sizing note:

    .venv/bin/python benchmarks/ingest.py --spans 50000 --repeats 1 --disk --phoenix-bin ''

Sustained mode (`--sustained-rate`): spans at a fixed rate for `--sustained-minutes`, the collector's RSS
sampled every `--sample-seconds`; prints the RSS series (start, median, max, last, slope per minute), the
memory gauges of /metrics and the export-latency histogram (`agentledger_export_seconds`):

    .venv/bin/python benchmarks/ingest.py --sustained-rate 3000 --sustained-minutes 10 --phoenix-bin ''
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_spans import request_bodies
from harness import exported_spans, free_port, phoenix_command, phoenix_span_count, start_up, wait_http, wait_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def peak_rss_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """VmRSS now; RssAnon (heap, Arrow, chDB's allocations) or RssFile (mapped code, chDB's library) with `field`."""
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def send_all(
    port: int, path: str, bodies: list[tuple[int, bytes]], senders: int, headers: dict[str, str]
) -> tuple[int, float]:
    """Sends every body over `senders` keep-alive connections; returns (spans acknowledged, seconds). A refusal
    other than back-pressure is printed: the figures would otherwise be over fewer spans than sent."""
    acknowledged = 0
    refusals: Counter[int] = Counter()
    lock = threading.Lock()
    queue = list(range(len(bodies)))

    def worker() -> None:
        nonlocal acknowledged
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                index = queue.pop()
            spans, body = bodies[index]
            while True:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status in (429, 503):  # back-pressure: retry as an OTLP exporter would
                    time.sleep(0.05)
                    continue
                break
            with lock:
                if response.status == 200:
                    acknowledged += spans
                else:
                    refusals[response.status] += 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if refusals:
        print(f"  refused requests by HTTP status: {dict(sorted(refusals.items()))}")
    return acknowledged, seconds


@dataclass
class Result:
    accepted_per_s: float
    stored_per_s: float
    cpu_per_100k: float
    peak_rss_mib: float
    acknowledged: int
    stored: int
    # RSS sampled every 0.1 s from the first request until every span is stored (the peak is VmHWM).
    median_rss_mib: float = float("nan")
    # RssAnon and RssFile of the largest sample: which part of the peak a change moved (heap and chDB's
    # allocations, or mapped files: chDB's code, mostly).
    anon_at_peak_mib: float = float("nan")
    file_at_peak_mib: float = float("nan")


class RssSampler:
    """RSS of a process every `period` seconds on a thread, from start() until stop(); median() of them."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self._pid, self._period = pid, period
        self._samples: list[float] = []
        self.anon_file_at_peak = (float("nan"), float("nan"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status = Path(f"/proc/{self._pid}/status").read_text()
            rss, anon, file = (int(re.search(rf"{field}:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]
                               for field in ("VmRSS", "RssAnon", "RssFile"))  # fmt: skip
            if not self._samples or rss > max(self._samples):
                self.anon_file_at_peak = (anon, file)
            self._samples.append(rss)
            self._stop.wait(self._period)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stops sampling; the median RSS in MiB."""
        self._stop.set()
        self._thread.join()
        return statistics.median(self._samples) if self._samples else float("nan")


FIGURES = ("accepted_per_s", "stored_per_s", "cpu_per_100k", "peak_rss_mib")


def run_agentledger(
    bodies: list[tuple[int, bytes]], senders: int, fsync: str, batch_max_spans: int, profile: bool,
    wait_timeout: float, disk: bool = False,
) -> Result:  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="agentledger-bench-"))
    config = f"spool: {{fsync: {fsync}}}\nexporters:\n  clickhouse: {{batch_max_spans: {batch_max_spans}}}\n"
    up = start_up(workdir, config)
    process, log_path, http_port = up.process, up.log, up.http_port
    profiler = None
    try:
        wait_http(f"http://127.0.0.1:{http_port}/healthz", process=process, log=log_path)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if profile and Path(py_spy).exists():
            profiler = subprocess.Popen(
                [py_spy, "record", "--pid", str(process.pid), "--rate", "200", "--format", "raw",
                 "--threads", "--nonblocking", "-o", str(workdir / "profile.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)
        cpu_before = cpu_seconds(process.pid)
        sampler = RssSampler(process.pid).start()
        began = time.perf_counter()
        accepted, send_seconds = send_all(http_port, "/v1/traces", bodies, senders,
                                          {"Content-Type": "application/x-protobuf"})  # fmt: skip
        collector_url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: exported_spans(collector_url) >= accepted, "agentledger to store the spans",
                   wait_timeout, poll=0.02)  # fmt: skip
        stored_seconds = time.perf_counter() - began
        stored = exported_spans(collector_url)
        cpu = cpu_seconds(process.pid) - cpu_before
        rss = peak_rss_mib(process.pid)
        median_rss = sampler.stop()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            print_profile(workdir / "profile.txt")
        return Result(accepted / send_seconds, accepted / stored_seconds, cpu / accepted * 100_000, rss, accepted,
                      stored, median_rss, *sampler.anon_file_at_peak)  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        if disk:
            # Once `up` has stopped, its chDB folder is free for this process to open.
            print_disk_usage(workdir / "data" / "clickhouse")
        shutil.rmtree(workdir, ignore_errors=True)


def print_disk_usage(chdb_folder: Path) -> None:
    """Bytes on disk per stored span, from system.parts after merging every table to steady state."""
    from agentledger.ingest.clickhouse import chdb_dsn, connect

    client = connect(chdb_dsn(chdb_folder), "agentledger")
    try:
        tables = [str(row[0]) for row in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
        ).result_rows]  # fmt: skip
        for table in tables:
            # Merging first: fresh parts compress worse than what a long-running table settles to.
            client.command(f"OPTIMIZE TABLE `{table}` FINAL")
        parts = {str(table): (int(rows), int(on_disk), int(uncompressed)) for table, rows, on_disk, uncompressed in
                 client.query(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts"
            " WHERE database = currentDatabase() AND active GROUP BY table"
        ).result_rows}  # fmt: skip
    finally:
        client.close()
    spans = parts.get("spans", (0, 0, 0))[0]
    if spans == 0:
        print("  on disk: no stored spans")
        return
    total = sum(on_disk for _, on_disk, _ in parts.values())
    print(f"  on disk (system.parts, merged): {spans} spans; spans table {parts['spans'][1] / spans:.0f} B/span"
          f" ({parts['spans'][2] / spans:.0f} B/span uncompressed); all tables {total / spans:.0f} B/span")  # fmt: skip
    for table, (rows, on_disk, _) in sorted(parts.items(), key=lambda item: -item[1][1]):
        print(f"    {table:<20} {rows:>9} rows {on_disk:>12} bytes")


def print_profile(path: Path) -> None:
    """Self time by function from py-spy's collapsed stacks, top 15."""
    if not path.exists():
        print("  (py-spy wrote no profile)")
        return
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1] if frames else "?"
        self_time[re.sub(r" \(.*?/site-packages/", " (", leaf)] += int(count_text)
        total += int(count_text)
    print(f"  where the collector's time goes (py-spy, {total} samples, self time):")
    for frame, count in self_time.most_common(15):
        print(f"    {100 * count / total:5.1f}%  {frame[:110]}")
    print("  by our innermost function (library time charged to the agentledger code that called it):")
    for frame, count in _ours_time(path).most_common(20):
        print(f"    {100 * count / total:5.1f}%  {frame[:110]}")


def _ours_time(path: Path) -> Counter[str]:
    """Samples by the innermost agentledger frame of each stack: which of our lines the time is spent under."""
    ours: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = [frame for frame in stack.split(";") if "agentledger/" in frame]
        ours[re.sub(r" \(.*?/agentledger/", " (", frames[-1]) if frames else "(outside agentledger)"] += int(count_text)
    return ours


def run_phoenix(phoenix_bin: str, bodies: list[tuple[int, bytes]], senders: int, wait_timeout: float) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(workdir), "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_TELEMETRY_ENABLED": "false",
           "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false", "PHOENIX_MAX_SPANS_QUEUE_SIZE": str(10**7)}  # fmt: skip
    log_path = workdir / "phoenix.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([phoenix_bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=180, process=process, log=log_path)
        cpu_before = cpu_seconds(process.pid)
        began = time.perf_counter()
        accepted, send_seconds = send_all(port, "/v1/traces", bodies, senders,
                                          {"Content-Type": "application/x-protobuf"})  # fmt: skip
        phoenix_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: phoenix_span_count(phoenix_url) >= accepted, "Phoenix to store the spans", wait_timeout,
                   poll=0.5)  # fmt: skip
        stored_seconds = time.perf_counter() - began
        cpu = cpu_seconds(process.pid) - cpu_before
        return Result(accepted / send_seconds, accepted / stored_seconds, cpu / accepted * 100_000,
                      peak_rss_mib(process.pid), accepted, phoenix_span_count(phoenix_url))  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


class IdRewriter:
    """A pooled request body re-sent with fresh trace and run ids, so every send is new spans in new runs (not
    re-sends the collector drops): the ids are patched in place at offsets found once, no re-encoding."""

    def __init__(self, spans: int, body: bytes, runs_in_pool: int) -> None:
        self.spans, self.body, self._runs_in_pool = spans, body, runs_in_pool
        request = ExportTraceServiceRequest.FromString(body)
        trace_ids = {span.trace_id for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}
        self._trace_offsets = [offset for trace_id in trace_ids for offset in _offsets(body, trace_id)]
        # run_bench_NNNNNNNN (agent_spans.py): eight digits after the prefix.
        self._run_offsets = [offset + len(RUN_PREFIX) for offset in _offsets(body, RUN_PREFIX)]

    def generation(self, number: int) -> bytes:
        if number == 0:
            return self.body
        body = bytearray(self.body)
        salt = number.to_bytes(8, "big")
        for offset in self._trace_offsets:
            body[offset : offset + 8] = salt
        for offset in self._run_offsets:
            run_index = int(body[offset : offset + 8]) + number * self._runs_in_pool
            body[offset : offset + 8] = b"%08d" % (run_index % 10**8)
        return bytes(body)


RUN_PREFIX = b"run_bench_"


def _offsets(data: bytes, needle: bytes) -> list[int]:
    offsets, at = [], data.find(needle)
    while at >= 0:
        offsets.append(at)
        at = data.find(needle, at + len(needle))
    return offsets


@dataclass
class RssSample:
    seconds: float
    rss_mib: float
    anon_mib: float
    gauges: dict[str, float]


MEMORY_GAUGES = ("agentledger_arrow_allocated_bytes", "agentledger_clickhouse_tracked_memory_bytes",
                 "agentledger_spool_unexported_bytes")  # fmt: skip


def scrape(collector_url: str) -> dict[str, float]:
    """Every unlabelled and labelled sample of /metrics, by its full name with labels."""
    values = {}
    for line in httpx.get(f"{collector_url}/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def sustained_run(args: argparse.Namespace) -> None:
    """Sends at args.sustained_rate spans/s for args.sustained_minutes, sampling the collector's memory."""
    pool = list(request_bodies(args.pool_spans, args.spans_per_request))
    # A pool of N spans holds fewer than N runs, so shifting run indices by N per generation never collides.
    rewriters = [IdRewriter(spans, body, args.pool_spans) for spans, body in pool]
    seconds = args.sustained_minutes * 60
    spans_per_request = statistics.mean(r.spans for r in rewriters)
    requests_due = max(1, round(args.sustained_rate * seconds / spans_per_request))
    interval = spans_per_request / args.sustained_rate
    print(f"sustained: {args.sustained_rate} spans/s for {args.sustained_minutes:g} min ({requests_due} requests of"
          f" ~{spans_per_request:.0f} spans, one every {interval * 1000:.0f} ms), RSS every {args.sample_seconds:g} s,"
          f" spool fsync={args.fsync}, batch_max_spans={args.batch_max_spans}, {os.cpu_count()} cores")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="agentledger-sustained-"))
    up = start_up(workdir, f"spool: {{fsync: {args.fsync}}}\nexporters:\n  clickhouse: {{batch_max_spans: "
                           f"{args.batch_max_spans}}}\n{args.extra_config}\n")  # fmt: skip
    process, log_path, collector_url = up.process, up.log, up.collector_url
    try:
        wait_http(f"{collector_url}/healthz", process=process, log=log_path)
        samples: list[RssSample] = []
        stop = threading.Event()
        began = time.perf_counter()

        def sample() -> None:
            while True:
                gauges = scrape(collector_url)
                memory = {name: gauges.get(name, float("nan")) for name in MEMORY_GAUGES}
                samples.append(RssSample(time.perf_counter() - began, rss_mib(process.pid),
                                         rss_mib(process.pid, "RssAnon"), memory))  # fmt: skip
                if stop.wait(args.sample_seconds):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        paced = send_paced(up.http_port, rewriters, requests_due, interval, args.senders)
        acked_seconds = time.perf_counter() - began
        wait_until(lambda: exported_spans(collector_url) >= paced.acknowledged, "agentledger to store the spans",
                   args.wait_timeout, poll=0.1)  # fmt: skip
        stored_seconds = time.perf_counter() - began
        stop.set()
        sampler.join()
        stored = exported_spans(collector_url)
        metrics = scrape(collector_url)
        peak = peak_rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    sent = sum(rewriters[index % len(rewriters)].spans for index in range(requests_due))
    print(f"  sustained spans: {sent} sent, {paced.acknowledged} acknowledged, {stored} stored")
    if paced.refusals:
        print(f"  refused requests by HTTP status: {dict(sorted(paced.refusals.items()))}")
    print(f"  rates: {paced.acknowledged / acked_seconds:.0f} acked/s, {stored / stored_seconds:.0f} stored/s"
          f" (target {args.sustained_rate}); back-pressure retries (429/503): {paced.back_pressure};"
          f" requests sent late: {paced.late} (at most {paced.max_lag:.1f} s behind schedule)")  # fmt: skip
    print_rss_series(samples, peak)
    print_export_latency(metrics)


@dataclass
class Paced:
    acknowledged: int
    refusals: Counter[int]
    back_pressure: int
    late: int
    max_lag: float


def send_paced(port: int, rewriters: list[IdRewriter], requests_due: int, interval: float, senders: int) -> Paced:
    """Request k leaves at k * interval (or as soon as a sender is free, counted late when over 1 s behind)."""
    lock = threading.Lock()
    paced = Paced(0, Counter(), 0, 0, 0.0)
    next_index = 0
    began = time.perf_counter()

    def worker() -> None:
        nonlocal next_index
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next_index
                if index >= requests_due:
                    break
                next_index += 1
            rewriter = rewriters[index % len(rewriters)]
            body = rewriter.generation(index // len(rewriters))
            lag = time.perf_counter() - began - index * interval
            if lag < 0:
                time.sleep(-lag)
            while True:
                connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                response = connection.getresponse()
                response.read()
                if response.status in (429, 503):  # back-pressure: retry as an OTLP exporter would
                    with lock:
                        paced.back_pressure += 1
                    time.sleep(0.05)
                    continue
                break
            with lock:
                if lag > 1:
                    paced.late += 1
                    paced.max_lag = max(paced.max_lag, lag)
                if response.status == 200:
                    paced.acknowledged += rewriter.spans
                else:
                    paced.refusals[response.status] += 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return paced


def print_rss_series(samples: list[RssSample], peak: float) -> None:
    rss = [sample.rss_mib for sample in samples]
    times = [sample.seconds / 60 for sample in samples]
    print(f"  RSS MiB ({len(samples)} samples): start {rss[0]:.0f}, median {statistics.median(rss):.0f},"
          f" max {max(rss):.0f}, last {rss[-1]:.0f}, slope {_slope(times, rss):+.1f} MiB/min"
          f" (second half {_slope(times[len(times) // 2:], rss[len(rss) // 2:]):+.1f} MiB/min); peak (VmHWM)"
          f" {peak:.0f}")  # fmt: skip
    anon = [sample.anon_mib for sample in samples]
    print(f"  of which anonymous (RssAnon) MiB: start {anon[0]:.0f}, median {statistics.median(anon):.0f}, max"
          f" {max(anon):.0f}, last {anon[-1]:.0f}; the rest is mapped files (chDB's library, mostly)")  # fmt: skip
    for name in MEMORY_GAUGES:
        values = [sample.gauges[name] / 2**20 for sample in samples]
        print(f"  {name} MiB: median {statistics.median(values):.0f}, max {max(values):.0f}, last {values[-1]:.0f}")
    print("  series (minute, RSS MiB):", " ".join(f"{t:.1f}:{r:.0f}" for t, r in zip(times, rss, strict=True)))


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope; 0 with fewer than two samples."""
    if len(xs) < 2 or max(xs) == min(xs):
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def print_export_latency(metrics: dict[str, float]) -> None:
    """The ClickHouse exporter's export-latency histogram from /metrics: buckets and estimated quantiles."""
    prefix = 'agentledger_export_seconds_bucket{exporter="clickhouse",le="'
    buckets = sorted(
        ((float(name[len(prefix):-2]), count) for name, count in metrics.items() if name.startswith(prefix)),
    )  # fmt: skip
    count = metrics.get('agentledger_export_seconds_count{exporter="clickhouse"}', 0.0)
    total = metrics.get('agentledger_export_seconds_sum{exporter="clickhouse"}', 0.0)
    if not buckets or count == 0:
        print("  export latency: no batches exported")
        return
    quantiles = ", ".join(f"p{round(q * 100)} {_quantile(buckets, q):.3f} s" for q in (0.5, 0.9, 0.99))
    print(f"  export latency (agentledger_export_seconds, {count:.0f} batches, mean {total / count:.3f} s):"
          f" {quantiles}")  # fmt: skip
    print("  export latency buckets (le: batches):",
          " ".join(f"{'+Inf' if bound == float('inf') else f'{bound:g}'}:{cumulative:.0f}"
                   for bound, cumulative in buckets))  # fmt: skip


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus's histogram_quantile: linear within the bucket holding the q-th observation."""
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower_bound
            width = cumulative - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 0.0)
        lower_bound, lower_count = bound, cumulative
    return lower_bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument(
        "--phoenix-spans",
        type=int,
        default=5_000,
        help="Phoenix stores ~150 spans/s, so it gets a smaller share of the same spans",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=1000)
    parser.add_argument("--fsync", default="always", choices=("always", "interval", "never"))
    parser.add_argument("--batch-max-spans", type=int, default=20_000, help="ClickHouse exporter insert size")
    parser.add_argument("--phoenix-bin", default=phoenix_command(), help="the `phoenix` command (arize-phoenix)")
    parser.add_argument("--profile", action="store_true", help="sample the collector with py-spy (last repeat)")
    parser.add_argument("--wait-timeout", type=float, default=600, help="seconds to wait for the spans to be stored")
    parser.add_argument(
        "--smoke", action="store_true", help="2,000 spans (200 to Phoenix), one repeat: checks it still runs"
    )
    parser.add_argument("--disk", action="store_true", help="print bytes per span on disk (last repeat)")
    parser.add_argument("--sustained-rate", type=int, default=0,
                        help="spans/s: run the sustained mode (memory over time), not the burst runs")  # fmt: skip
    parser.add_argument("--sustained-minutes", type=float, default=10)
    parser.add_argument("--sample-seconds", type=float, default=5, help="RSS sampling period (sustained mode)")
    parser.add_argument("--pool-spans", type=int, default=20_000,
                        help="distinct spans pre-encoded for the sustained mode, re-sent under fresh ids")  # fmt: skip
    parser.add_argument("--extra-config", default="", help="YAML appended to the collector's config (sustained)")
    args = parser.parse_args()
    if args.sustained_rate > 0:
        sustained_run(args)
        return
    if args.smoke:
        args.spans, args.phoenix_spans, args.repeats, args.spans_per_request = 2000, 200, 1, 500
        args.wait_timeout = min(args.wait_timeout, 120)

    bodies = list(request_bodies(args.spans, args.spans_per_request))
    megabytes = sum(len(body) for _, body in bodies) / 1e6
    print(f"workload: {args.spans} spans in {len(bodies)} requests, {megabytes:.0f} MB protobuf, "
          f"{args.senders} senders, spool fsync={args.fsync}, {os.cpu_count()} cores")  # fmt: skip
    sent = sum(count for count, _ in bodies)
    ours = [run_agentledger(bodies, args.senders, args.fsync, args.batch_max_spans,
                            args.profile and i == args.repeats - 1, args.wait_timeout,
                            args.disk and i == args.repeats - 1)
            for i in range(args.repeats)]  # fmt: skip
    for index, result in enumerate(ours):
        print(f"  agentledger run {index + 1}: {result.accepted_per_s:9.0f} acked/s {result.stored_per_s:9.0f} "
              f"stored/s  {result.cpu_per_100k:5.1f} CPU s/100k  {result.peak_rss_mib:5.0f} MiB peak"
              f"  {result.median_rss_mib:5.0f} MiB median RSS")  # fmt: skip
        print(f"  agentledger run {index + 1} spans: {sent} sent, {result.acknowledged} acknowledged,"
              f" {result.stored} stored")  # fmt: skip
        print(f"  agentledger run {index + 1} at the largest RSS sample: {result.anon_at_peak_mib:.0f} MiB anonymous,"
              f" {result.file_at_peak_mib:.0f} MiB mapped files")  # fmt: skip
    median = Result(
        *(statistics.median(getattr(r, f) for r in ours) for f in FIGURES),
        ours[-1].acknowledged,
        ours[-1].stored,
        statistics.median(r.median_rss_mib for r in ours),
    )
    rows = [("agentledger (median)", median)]
    if args.phoenix_bin:
        phoenix_bodies = list(request_bodies(args.phoenix_spans, args.spans_per_request))
        phoenix = run_phoenix(args.phoenix_bin, phoenix_bodies, args.senders, args.wait_timeout)
        phoenix_sent = sum(count for count, _ in phoenix_bodies)
        print(f"  phoenix spans: {phoenix_sent} sent, {phoenix.acknowledged} acknowledged, {phoenix.stored} stored")
        rows.append((f"phoenix ({args.phoenix_spans} spans)", phoenix))
    else:
        print("phoenix: not run (install arize-phoenix and pass --phoenix-bin)")
    print(f"\n{'':24} {'acked spans/s':>14} {'stored spans/s':>15} {'CPU s/100k':>11} {'peak RSS MiB':>13}")
    for name, result in rows:
        print(f"{name:24} {result.accepted_per_s:14.0f} {result.stored_per_s:15.0f} {result.cpu_per_100k:11.1f} "
              f"{result.peak_rss_mib:13.0f}")  # fmt: skip
    if len(rows) == 2:
        phoenix = rows[1][1]
        print(f"\nratio agentledger/phoenix: acked {median.accepted_per_s / phoenix.accepted_per_s:.1f}x, "
              f"stored {median.stored_per_s / phoenix.stored_per_s:.1f}x, "
              f"CPU per span {phoenix.cpu_per_100k / median.cpu_per_100k:.1f}x less")  # fmt: skip
    print(f"median RSS while ingesting (median of the runs): {median.median_rss_mib:.0f} MiB")
    print(f"per collector core (stored spans / CPU second): {100_000 / median.cpu_per_100k:.0f} spans/s")


if __name__ == "__main__":
    main()
