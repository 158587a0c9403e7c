"""The Phoenix exporter against a real Arize Phoenix server: spans sent by the OTel SDK through `agentledger up`
come out of Phoenix's own REST API as OpenInference spans carrying our audit attributes; with Phoenix down,
ClickHouse ingestion goes on and Phoenix catches up once back."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentledger.collector.config import RetryConfig, SpoolConfig
from agentledger.collector.deadletter import DeadLetterStore, all_entries
from agentledger.collector.export_worker import ExportWorker
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.exporters.phoenix import PhoenixExporter, PhoenixExporterConfig
from agentledger.collector.spool import Spool
from agentledger.collector.telemetry import CollectorTelemetry
from tests.collector.span_batches import span_batch
from tests.conftest import (
    ARGUMENTS,
    RunningPhoenix,
    phoenix_config,
    sdk_tracer_provider,
    send_reviewed_run,
    start_service,
    wait_for_phoenix_spans,
    wait_for_timeline,
)

pytestmark = pytest.mark.slow


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans}


def test_spans_reach_phoenix_as_openinference_with_audit_attributes(phoenix: RunningPhoenix, tmp_path: Path) -> None:
    run_id = "run_phoenix_export_0001"
    config = phoenix_config(tmp_path, phoenix.url, "export-test")
    service = start_service(tmp_path / "data", "--config", str(config))
    try:
        send_reviewed_run(service.collector_url, run_id)
        timeline = wait_for_timeline(service.api_url, run_id, 7)
        trace_id = timeline["entries"][0]["trace_id"]
        spans = by_name(wait_for_phoenix_spans(phoenix.url, "export-test", trace_id, 7))
    finally:
        service.stop()

    assert {name: span["span_kind"] for name, span in spans.items()} == {
        "invoke_agent refund-agent": "AGENT",
        "retrieval zendesk": "RETRIEVER",
        "chat gpt-4.1-mini": "LLM",
        "policy refund-limit": "GUARDRAIL",
        "approval issue_refund": "CHAIN",
        "execute_tool issue_refund": "TOOL",
        "write stripe": "CHAIN",
    }
    for span in spans.values():
        assert span["attributes"]["session.id"] == run_id
        assert span["attributes"]["metadata.run_id"] == run_id
        assert span["attributes"]["agent.run.id"] == run_id

    llm = spans["chat gpt-4.1-mini"]["attributes"]
    assert llm["llm.input_messages.0.message.role"] == "user"
    assert llm["llm.input_messages.0.message.content"] == "Refund A-1001?"
    assert llm["llm.output_messages.0.message.content"] == "Refund 40 EUR."
    assert (llm["llm.token_count.prompt"], llm["llm.token_count.completion"], llm["llm.token_count.total"]) == (
        120, 9, 129,
    )  # fmt: skip
    assert llm["llm.model_name"] == "gpt-4.1-mini"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", llm["metadata.context_hash"])
    assert llm["agentledger.prompt.context_hash"] == llm["metadata.context_hash"]

    retrieved = spans["retrieval zendesk"]["attributes"]
    assert retrieved["retrieval.documents.0.document.id"] == "SUP-4411"
    assert retrieved["retrieval.documents.0.document.content"] == "Please refund order A-1001"
    assert retrieved["retrieval.documents.0.document.score"] == 0.93
    assert retrieved["metadata.provenance"] == "user_provided"

    tool = spans["execute_tool issue_refund"]["attributes"]
    assert tool["tool.name"] == "issue_refund"
    assert json.loads(tool["input.value"]) == ARGUMENTS
    assert json.loads(tool["output.value"]) == {"refund": "re_77"}
    assert tool["metadata.tool_access"] == "write"

    approved = spans["approval issue_refund"]["attributes"]
    assert (approved["metadata.approval_decision"], approved["metadata.approver"]) == ("approved", "user:maria.lopez")
    assert approved["metadata.arguments_hash"] == tool["metadata.arguments_hash"]
    guard = spans["policy refund-limit"]["attributes"]
    assert (guard["metadata.policy_id"], guard["metadata.policy_decision"]) == ("refund-limit", "allow")
    written = spans["write stripe"]["attributes"]
    assert (written["metadata.write_system"], written["metadata.write_ref"]) == ("stripe", "re_77")


def test_phoenix_down_leaves_clickhouse_ingesting_and_catches_up(phoenix: RunningPhoenix, tmp_path: Path) -> None:
    config = phoenix_config(tmp_path, phoenix.url, "outage-test")
    service = start_service(tmp_path / "data", "--config", str(config))
    phoenix.stop()
    try:
        run_ids = [f"run_phoenix_outage_{index:04d}" for index in range(3)]
        for run_id in run_ids:
            send_reviewed_run(service.collector_url, run_id)
        # ClickHouse has every span although Phoenix is down.
        trace_ids = [wait_for_timeline(service.api_url, run_id, 7)["entries"][0]["trace_id"] for run_id in run_ids]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 'agentledger_export_failures_total{exporter="phoenix"}' not in (
            metrics := httpx.get(f"{service.collector_url}/metrics", timeout=5).text
        ):
            time.sleep(0.2)
        assert 'agentledger_spans_exported_total{exporter="clickhouse"} 21' in metrics
        assert 'agentledger_export_failures_total{exporter="phoenix"}' in metrics
        assert 'agentledger_spans_exported_total{exporter="phoenix"}' not in metrics

        phoenix.start()
        for trace_id in trace_ids:
            assert len(wait_for_phoenix_spans(phoenix.url, "outage-test", trace_id, 7)) == 7
        metrics = httpx.get(f"{service.collector_url}/metrics", timeout=5).text
        assert 'agentledger_spans_exported_total{exporter="phoenix"} 21' in metrics
        assert 'agentledger_spans_skipped_total{exporter="phoenix"}' not in metrics
    finally:
        if phoenix.process is None:
            phoenix.start()
        service.stop()


PLANTED = {
    "email": "jane.doe@example.com",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "secret": "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
}


def test_phoenix_sees_only_redacted_content(phoenix: RunningPhoenix, tmp_path: Path) -> None:
    from agentledger.emitter import ContentCapture, Document, agent_run, prompt, retrieval, tool_call
    from agentledger.schema.conventions import InputProvenanceValues as From
    from agentledger.schema.conventions import ToolAccessValues as Access
    from tests.conftest import sdk_tracer_provider

    run_id = "run_phoenix_pii_0001"
    config = phoenix_config(tmp_path, phoenix.url, "pii-test")
    service = start_service(tmp_path / "data", "--config", str(config))
    text = "Customer {email}, phone {phone}, card {card}, IBAN {iban}, key {secret}".format(**PLANTED)
    try:
        provider = sdk_tracer_provider(service.collector_url, service_name="refund-agent")
        with agent_run("refund-agent-1", run_id=run_id, capture=ContentCapture.FULL, tracer_provider=provider):
            with retrieval("zendesk", provenance=From.USER_PROVIDED, documents=[Document("SUP-1", text, 1.0)]):
                pass
            with prompt("gpt-4.1-mini", [{"role": "user", "content": text}], context={"t": text}) as call:
                call.record_response([{"role": "assistant", "content": f"Emailing {PLANTED['email']}"}])
            with tool_call("send_email", access=Access.WRITE, arguments={"to": PLANTED["email"], "body": text}):
                pass
        provider.shutdown()
        trace_id = wait_for_timeline(service.api_url, run_id, 4)["entries"][0]["trace_id"]
        spans = wait_for_phoenix_spans(phoenix.url, "pii-test", trace_id, 4)
    finally:
        service.stop()

    everything = json.dumps(spans)
    for kind, value in PLANTED.items():
        assert value not in everything, f"{kind} reached Phoenix"
    assert "[EMAIL]" in everything and "[CARD]" in everything
    # The context hash was computed by the agent before redaction and passes through unchanged.
    llm = by_name(spans)["chat gpt-4.1-mini"]["attributes"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", llm["metadata.context_hash"])


class _RefusingOtlpServer:
    """A local OTLP/HTTP endpoint answering 400 to any request carrying a span named `poison` (like Phoenix
    refusing a span it cannot take) and 200 otherwise; it records the span names it accepted."""

    def __init__(self) -> None:
        accepted: list[str] = []
        self.accepted = accepted
        self.refused_requests = 0
        self.refuse_poison = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = gzip.decompress(self.rfile.read(int(self.headers["content-length"])))
                request = ExportTraceServiceRequest.FromString(body)
                names = [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
                status = 400 if server.refuse_poison and "poison" in names else 200
                if status == 200:
                    accepted.extend(names)
                else:
                    server.refused_requests += 1
                self.send_response(status)
                self.send_header("content-length", "25")
                self.end_headers()
                self.wfile.write(b'{"detail":"invalid span"}')

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def test_a_phoenix_400_dead_letters_the_refused_spans_and_stalls_neither_phoenix_nor_clickhouse(
    client: Client, tmp_path: Path
) -> None:
    server = _RefusingOtlpServer()
    spool = Spool(tmp_path / "spool", SpoolConfig(fsync="never"))
    telemetry = CollectorTelemetry()
    refusing = PhoenixExporterConfig(endpoint=server.url, retry=RetryConfig(initial_interval_s=0.01))
    workers = [
        ExportWorker.for_config("phoenix", PhoenixExporter(refusing), spool, telemetry, refusing),
        ExportWorker("clickhouse", ClickHouseExporter(client), spool, telemetry, RetryConfig(), 20_000),
    ]
    names = [f"span {index}" for index in range(10)]
    names[6] = "poison"
    spool.append(span_batch(names, tenant="acme", run_id="run_acme"))
    spool.append(span_batch(["later 0", "later 1"], tenant="globex", run_id="run_globex"))
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            spool.bytes_after(spool.cursor(name).committed) for name in ("phoenix", "clickhouse")
        ):
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop(0)
        server.close()

    assert sorted(server.accepted) == sorted([name for name in names if name != "poison"] + ["later 0", "later 1"])
    assert int(client.command("SELECT count() FROM spans")) == 12
    (entry,) = all_entries(spool.directory)
    assert (entry.exporter, entry.reason, entry.span_count, entry.tenants) == ("phoenix", "http_400", 1, ("acme",))
    assert "Phoenix answered 400" in entry.error and "invalid span" in entry.error
    assert DeadLetterStore(spool.directory, "phoenix").read(entry)["name"].to_pylist() == ["poison"]
    assert telemetry.value("agentledger_spans_dead_lettered_total", ("exporter", "phoenix", "reason", "http_400")) == 1
    assert telemetry.value("agentledger_spans_exported_total", ("exporter", "phoenix")) == 11
    assert telemetry.value("agentledger_spans_exported_total", ("exporter", "clickhouse")) == 12
    spool.close()


def test_deadletter_cli_lists_and_replays_while_up_runs(tmp_path: Path) -> None:
    server = _RefusingOtlpServer()
    config = tmp_path / "agentledger.yaml"
    config.write_text(
        f"""
exporters:
  clickhouse: {{}}
  phoenix:
    endpoint: "{server.url}"
    retry: {{initial_interval_s: 0.05}}
service:
  pipelines:
    traces:
      exporters: [clickhouse, phoenix]
""",
        encoding="utf-8",
    )
    data_dir = tmp_path / "data"
    service = start_service(data_dir, "--config", str(config))
    cli = [sys.executable, "-m", "agentledger", "deadletter"]
    where = ["--data-dir", str(data_dir), "--config", str(config)]
    try:
        provider = sdk_tracer_provider(service.collector_url)
        tracer = provider.get_tracer("tests")
        for name in ("fine", "poison", "also fine"):
            tracer.start_span(name, attributes={"agent.run.id": "run_cli"}).end()
        provider.shutdown()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all_entries(data_dir / "spool"):
            time.sleep(0.1)
        listed = subprocess.run([*cli, "list", *where], capture_output=True, text=True, timeout=60)
        (entry,) = all_entries(data_dir / "spool")
        unknown = subprocess.run([*cli, "replay", "nope", *where], capture_output=True, text=True, timeout=60)
        server.refuse_poison = False  # Phoenix fixed
        replay = subprocess.run([*cli, "replay", entry.id, *where], capture_output=True, text=True, timeout=60)
        while time.monotonic() < deadline and all_entries(data_dir / "spool"):
            time.sleep(0.1)
        metrics = httpx.get(f"{service.collector_url}/metrics", timeout=10).text
    finally:
        service.stop()
        server.close()

    assert listed.returncode == 0
    assert listed.stdout.startswith(f"{entry.id}\tphoenix\t")
    assert "\t1 spans\thttp_400\ttenants default" in listed.stdout
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1, "agentledger deadletter: no dead-letter entry with id 'nope' (see `agentledger deadletter list`)",
    )  # fmt: skip
    assert replay.returncode == 0 and "marked 1 entry for replay" in replay.stdout
    assert all_entries(data_dir / "spool") == []
    assert sorted(server.accepted) == ["also fine", "fine", "poison"]
    assert 'agentledger_spans_dead_lettered_total{exporter="phoenix",reason="http_400"} 1' in metrics
    assert 'agentledger_spans_replayed_total{exporter="phoenix"} 1' in metrics
    assert 'agentledger_deadletter_entries{exporter="phoenix"} 0' in metrics
