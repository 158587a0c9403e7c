"""Hostile OTLP requests against a real `agentledger up`: what each gets answered, and whether the
collector's memory stays flat.

    .venv/bin/python benchmarks/hostile_requests.py --repeats 5

Cases: a 4 MB request whose 256 x 16 KB resource attributes would be copied to each of its 64 spans
(256 MB decoded), 50k spans in one request, deeply nested attribute values (and nested past the protobuf
parser's limit), impossible timestamps, and a request bigger than the whole spool. Before each request
the benchmark waits for the spool to drain, as a sender honouring 429 would. For each: the HTTP
statuses, spans accepted / refused (from the responses' partial success and the collector's /metrics),
and the collector's RSS and peak RSS (VmHWM) before and after. `--smoke` runs smaller sizes (the test suite runs it so).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import free_port, wait_http

START = 1_700_000_000_000_000_000
SPOOL_MAX_MIB = 8
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def _span(index: int, attributes: list[KeyValue] | None = None, start: int = START) -> Span:
    return Span(
        trace_id=(index + 1).to_bytes(16, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"hostile-{index}",
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1000,
        attributes=attributes or [],
    )


def _request(spans: list[Span], resource: list[KeyValue] | None = None) -> bytes:
    resource_spans = ResourceSpans(resource=Resource(attributes=resource or []), scope_spans=[ScopeSpans(spans=spans)])
    return bytes(ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString())


def resource_amplification(smoke: bool) -> bytes:
    """The testers' case: 4 MB on the wire, 256 MB if each span got its own copy of the resource."""
    resource = [_kv(f"res.{index}", _text(f"{index:04d}" * 4096)) for index in range(256)]
    return _request([_span(index) for index in range(64)], resource)


def many_spans(smoke: bool) -> bytes:
    return _request([_span(index) for index in range(12_000 if smoke else 50_000)])


def deep_attributes(smoke: bool) -> bytes:
    """Kvlists nested 28 deep (3 messages a level: protobuf's parser stops at 100), 16 wide, on 200 spans."""
    value = _text("leaf")
    for depth in range(28):
        wide = [_kv(f"k{index}", _text("v" * 64)) for index in range(15)]
        holder = AnyValue()
        holder.kvlist_value.values.extend([*wide, _kv(f"level{depth}", value)])
        value = holder
    return _request([_span(index, [_kv("deep", value)]) for index in range(50 if smoke else 200)])


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand: the SDK classes refuse to build past the limit."""
    tag, length = bytes([number << 3 | 2]), len(payload)
    varint = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            return tag + bytes(varint) + payload


def nested_past_the_limit(smoke: bool) -> bytes:
    """An attribute value nested 2,000 kvlists deep: the parser refuses it (400), it must not crash."""
    value = _field(1, b"leaf")  # AnyValue.string_value
    for _ in range(2000):
        key_value = _field(1, b"k") + _field(2, value)  # KeyValue.key, KeyValue.value
        value = _field(6, _field(1, key_value))  # AnyValue.kvlist_value -> KeyValueList.values
    span = _span(0).SerializeToString() + _field(9, _field(1, b"deep") + _field(2, value))  # Span.attributes
    return _field(1, _field(2, _field(2, span)))  # request.resource_spans -> scope_spans -> spans


def impossible_times(smoke: bool) -> bytes:
    spans = [_span(index, start=2**63 + index if index % 2 else START) for index in range(1000)]
    return _request(spans)


def bigger_than_the_spool(smoke: bool) -> bytes:
    """~12 MB of incompressible values: under the 16 MiB body limit and the decoded budget, over the spool."""
    spans = [_span(index, [_kv("payload", _text(f"{index:08x}" * 1500))]) for index in range(1000)]
    return _request(spans)


CASES: dict[str, Callable[[bool], bytes]] = {
    "resource amplification": resource_amplification,
    "50k spans in one request": many_spans,
    "deep attributes": deep_attributes,
    "nested past the limit": nested_past_the_limit,
    "impossible timestamps": impossible_times,
    "bigger than the spool": bigger_than_the_spool,
}


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of the process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    figures = []
    for name in ("VmRSS", "VmHWM"):
        match = re.search(rf"{name}:\s+(\d+) kB", status)
        figures.append(int(match.group(1)) / 1024 if match else float("nan"))
    return figures[0], figures[1]


def metric(collector_url: str, line_prefix: str) -> int:
    for line in httpx.get(f"{collector_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_prefix + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


@dataclass
class Outcome:
    statuses: Counter[int]
    accepted: int
    refused: int
    message: str
    rss_before: float
    peak_before: float
    rss_after: float
    peak_after: float


def send(collector_url: str, body: bytes, spans: int) -> tuple[int, int, int, str]:
    """(status, spans accepted, spans refused, message) of one request."""
    response = httpx.post(f"{collector_url}/v1/traces", content=body, headers=PROTOBUF, timeout=120)
    if response.status_code == 200:
        partial = ExportTraceServiceResponse.FromString(response.content).partial_success
        return 200, spans - partial.rejected_spans, partial.rejected_spans, partial.error_message
    return response.status_code, 0, spans, status_pb2.Status.FromString(response.content).message


def _span_count(body: bytes) -> int:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return 1  # the one span nested past the parser's limit
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def wait_for_an_empty_spool(collector_url: str) -> None:
    """Lets the exporter drain what the previous request left, as a sender honouring 429 would."""
    deadline = time.monotonic() + 300
    while metric(collector_url, "agentledger_spool_unexported_bytes") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def run_case(collector_url: str, pid: int, build: Callable[[bool], bytes], smoke: bool, repeats: int) -> Outcome:
    body = build(smoke)
    spans = _span_count(body)
    rss_before, peak_before = memory_mib(pid)
    statuses: Counter[int] = Counter()
    accepted = refused = 0
    message = ""
    for _ in range(repeats):
        wait_for_an_empty_spool(collector_url)
        status, ok, no, message = send(collector_url, body, spans)
        statuses[status] += 1
        accepted += ok
        refused += no
    rss_after, peak_after = memory_mib(pid)
    return Outcome(statuses, accepted, refused, message, rss_before, peak_before, rss_after, peak_after)


@dataclass
class Collector:
    process: subprocess.Popen[bytes]
    url: str
    workdir: Path


def start_collector() -> Collector:
    workdir = Path(tempfile.mkdtemp(prefix="agentledger-hostile-"))
    config = workdir / "agentledger.yaml"
    # A small spool, so that one request can be bigger than all of it; fsync off: memory is measured here.
    config.write_text(f"spool: {{max_bytes: {SPOOL_MAX_MIB * 1024 * 1024}, fsync: never}}\n")
    http_port, grpc_port, api_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentledger", "up", "--config", str(config), "--data-dir", str(workdir / "data"),
         "--otlp-http-port", str(http_port), "--otlp-grpc-port", str(grpc_port), "--api-port", str(api_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    wait_http(f"{url}/healthz")
    return Collector(process, url, workdir)


def stop_collector(collector: Collector) -> None:
    collector.process.send_signal(signal.SIGTERM)
    try:
        collector.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        collector.process.kill()
        collector.process.wait()
    shutil.rmtree(collector.workdir, ignore_errors=True)


def rows(collector: Collector, smoke: bool, repeats: int) -> Iterator[tuple[str, Outcome]]:
    for name, build in CASES.items():
        yield name, run_case(collector.url, collector.process.pid, build, smoke, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="requests sent per case")
    parser.add_argument("--smoke", action="store_true", help="smaller requests (the test suite's run)")
    args = parser.parse_args()

    collector = start_collector()
    try:
        rss_start, peak_start = memory_mib(collector.process.pid)
        print(f"collector started: RSS {rss_start:.0f} MiB, peak {peak_start:.0f} MiB; spool {SPOOL_MAX_MIB} MiB")
        print(f"{'case':26} {'statuses':14} {'accepted':>9} {'refused':>9} "
              f"{'RSS MiB before/after':>21} {'peak MiB before/after':>22}")  # fmt: skip
        for name, outcome in rows(collector, args.smoke, args.repeats):
            statuses = ",".join(f"{status}x{count}" for status, count in sorted(outcome.statuses.items()))
            print(f"{name:26} {statuses:14} {outcome.accepted:9d} {outcome.refused:9d} "
                  f"{outcome.rss_before:10.0f}/{outcome.rss_after:<10.0f} "
                  f"{outcome.peak_before:11.0f}/{outcome.peak_after:<10.0f}")  # fmt: skip
            print(f"  answer: {outcome.message[:150]}")
        rss_end, peak_end = memory_mib(collector.process.pid)
        print(f"collector at the end: RSS {rss_end:.0f} MiB, peak {peak_end:.0f} MiB "
              f"(peak grew {peak_end - peak_start:.0f} MiB over the start)")  # fmt: skip
        refused_budget = metric(collector.url, 'agentledger_spans_refused_total{reason="decoded_size_budget"}')
        refused_spool = metric(collector.url, 'agentledger_spans_refused_total{reason="RequestTooLarge"}')
        rejected_times = metric(collector.url, 'agentledger_spans_rejected_total{reason="invalid_timestamp"}')
        print(f"/metrics: refused over the decoded-size budget {refused_budget}, refused bigger than the spool "
              f"{refused_spool}, rejected for impossible timestamps {rejected_times}")  # fmt: skip
    finally:
        stop_collector(collector)


if __name__ == "__main__":
    main()
