"""Demo traffic: the demo agents (demo_workflows.py) emit through the plain OTel SDK and its OTLP/HTTP
exporter to the collector; the downstream systems' records of their writes go to the query API.

The span part must succeed; the writes part reports what happened, since the endpoint may not exist yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agentledger.demo_workflows import WORKFLOWS, DemoRun, DemoWorld, WriteRecord

__all__ = ["DemoError", "DemoReport", "DemoRun", "post_writes", "send_demo"]


class DemoError(RuntimeError):
    """The demo spans could not be delivered; the message says where it tried."""


@dataclass(frozen=True)
class DemoReport:
    runs: list[DemoRun]
    writes: list[WriteRecord]
    # One sentence on what became of the writes (sent, not sent and why).
    writes_status: str


class _FailureRecordingExporter(SpanExporter):
    """Delegates to the OTLP exporter and remembers a failed export, which the SDK only logs."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed = True
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def send_demo(collector_url: str, api_url: str | None = None) -> DemoReport:
    """Runs every demo workflow; spans go to the collector, then the writes to `api_url` if given."""
    endpoint = f"{collector_url.rstrip('/')}/v1/traces"
    exporter = _FailureRecordingExporter(OTLPSpanExporter(endpoint=endpoint, timeout=10))
    provider = TracerProvider(resource=Resource.create({"service.name": "agentledger-demo"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    world = DemoWorld(provider)
    try:
        for workflow in WORKFLOWS:
            workflow(world)
        if not provider.force_flush(timeout_millis=30_000):
            raise DemoError(f"the collector at {endpoint} did not take the demo spans in time")
    finally:
        provider.shutdown()
    if exporter.failed:
        raise DemoError(f"the collector at {endpoint} refused or did not answer; is `agentledger up` running?")
    status = post_writes(api_url, world.writes) if api_url else "downstream writes not sent: no query API URL given"
    return DemoReport(world.runs, world.writes, status)


def post_writes(api_url: str, writes: Sequence[WriteRecord]) -> str:
    """Sends the writes to POST /v1/writes; returns a sentence saying what happened, never raises for HTTP."""
    url = f"{api_url.rstrip('/')}/v1/writes"
    try:
        response = httpx.post(url, json={"writes": [write.to_json() for write in writes]}, timeout=30)
    except httpx.HTTPError as error:
        return f"downstream writes not sent: cannot reach {url} ({error})"
    if response.status_code == 404:
        return (
            f"downstream writes not sent: {url} answered 404 (this query API has no writes endpoint yet);"
            f" the {len(writes)} writes are in the spans only"
        )
    if response.status_code != 202:
        return f"downstream writes not sent: {url} answered {response.status_code}: {response.text[:200]}"
    try:
        accepted = int(response.json()["accepted"])
    except (ValueError, KeyError, TypeError):
        return f"downstream writes sent to {url}, but its answer was not {{'accepted': n}}: {response.text[:200]}"
    return f"{accepted} of {len(writes)} downstream writes accepted by {url}"
