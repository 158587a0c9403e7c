"""The collector and API roles as separate code paths: two collectors (own spool, own collector id) write the
same runs into one database, a separate API reads what they wrote, and every run verifies.

In one process over one chDB database, since chDB cannot be shared between processes; against a ClickHouse
server each role is its own process (`agentledger collector`, `agentledger api`).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import set_span_in_context

from agentledger.schema import conventions as conv
from agentledger.service import build_api_role, build_collector_role
from agentledger.settings import ENV_COLLECTOR_ID, ENV_CONFIG, Settings, load_settings
from tests.conftest import serve_asgi, wait_for_timeline

RUNS = ("run_roles_1", "run_roles_2", "run_roles_3")


def _settings(tmp_path: Path, role_dir: str, collector_id: str, engine_dsn: str, database: str) -> Settings:
    # One config file for every process, as in docker-compose: the checkpoint files on storage all share.
    config = tmp_path / "agentledger.yaml"
    if not config.exists():
        config.write_text(
            yaml.safe_dump({"exporters": {"clickhouse": {"checkpoint_dir": str(tmp_path / "checkpoints")}}})
        )
    flags = {"data_dir": tmp_path / role_dir, "dsn": engine_dsn, "database": database}
    return load_settings(flags, {ENV_CONFIG: str(config), ENV_COLLECTOR_ID: collector_id})


@contextlib.contextmanager
def _collector(settings: Settings, client: Client) -> Iterator[str]:
    role = build_collector_role(settings, client)
    assert role.http_app is not None
    role.pipeline.start()
    try:
        with serve_asgi(role.http_app) as url:
            yield url
    finally:
        role.pipeline.shutdown(10)


def _runs_spans() -> dict[str, list[ReadableSpan]]:
    """Per run: a root span, two children and one span an agent's retry sends to both collectors."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "roles-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.roles")
    for run_id in RUNS:
        root = tracer.start_span("invoke_agent", attributes={conv.AGENT_RUN_ID: run_id})
        for name in ("tool a", "tool b", "retried"):
            tracer.start_span(name, context=set_span_in_context(root), attributes={conv.AGENT_RUN_ID: run_id}).end()
        root.end()
    spans: dict[str, list[ReadableSpan]] = {run_id: [] for run_id in RUNS}
    for span in memory.get_finished_spans():
        spans[str((span.attributes or {})[conv.AGENT_RUN_ID])].append(span)
    return spans


def _send(collector_url: str, spans: list[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()


def test_two_collectors_write_the_same_runs_and_a_separate_api_verifies_every_one(
    client: Client, engine_dsn: str, database: str, tmp_path: Path
) -> None:
    collector_a = _settings(tmp_path, "collector-a", "edge-a", engine_dsn, database)
    collector_b = _settings(tmp_path, "collector-b", "edge-b", engine_dsn, database)
    api = _settings(tmp_path, "api", "api-1", engine_dsn, database)
    spans = _runs_spans()

    with (
        _collector(collector_a, client) as url_a,
        _collector(collector_b, client) as url_b,
        serve_asgi(build_api_role(api, client)) as api_url,
    ):
        # Behind a load balancer: the root and the retried span reach A, the tools and the retry B.
        _send(url_a, [s for run in RUNS for s in spans[run] if s.name in ("invoke_agent", "retried")])
        for run_id in RUNS:
            wait_for_timeline(api_url, run_id, 2)
        _send(url_b, [s for run in RUNS for s in spans[run] if s.name != "invoke_agent"])
        timelines = {run_id: wait_for_timeline(api_url, run_id, 4) for run_id in RUNS}
        verified = {run_id: httpx.get(f"{api_url}/v1/runs/{run_id}/verify", timeout=30).json() for run_id in RUNS}
        logs = httpx.get(f"{api_url}/v1/audit/log/verify", timeout=30).json()

    for run_id in RUNS:
        assert sorted(entry["name"] for entry in timelines[run_id]["entries"]) == [
            "invoke_agent", "retried", "tool a", "tool b"
        ]  # fmt: skip
        body = verified[run_id]
        assert (body["status"], body["links"], body["spans_checked"]) == ("intact", 2, 4), body
        assert body["chain_breaks"] == [] and body["findings"] == []
        assert [(log["collector_id"], log["size"], log["consistent"]) for log in body["logs"]] == [
            ("edge-a", 3, True), ("edge-b", 3, True)
        ]  # fmt: skip
    # The retried span is stored once: B found it chained by A with the same content and dropped its copy.
    stored = client.query(
        "SELECT run_id, count() FROM spans WHERE name = 'retried' GROUP BY run_id ORDER BY run_id"
    ).result_rows
    assert stored == [(run_id, 1) for run_id in RUNS]
    assert logs["status"] == "consistent"
    assert [(log["collector_id"], log["size"], log["checkpoint_size"]) for log in logs["logs"]] == [
        ("edge-a", 3, 3), ("edge-b", 3, 3)
    ]  # fmt: skip
    # Each collector its own spool and checkpoint file.
    assert (tmp_path / "collector-a" / "spool").is_dir() and (tmp_path / "collector-b" / "spool").is_dir()
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "default~edge-a.checkpoints.jsonl", "default~edge-b.checkpoints.jsonl"
    ]  # fmt: skip


@pytest.mark.parametrize("role", ["collector", "api"])
def test_a_role_alone_on_embedded_chdb_is_refused_with_a_sentence(role: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentledger", role, "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip

    folder = (tmp_path / "data" / "clickhouse").resolve().as_posix().lstrip("/")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"agentledger {role}: `agentledger {role}` needs a ClickHouse server DSN (--dsn http://host:8123 or"
        f" AGENTLEDGER_CLICKHOUSE_DSN), not embedded chDB at chdb:///{folder}: a chDB folder belongs to one process"
    )
    # Refused before anything was opened or created.
    assert not (tmp_path / "data").exists()


def test_a_role_against_an_unreachable_server_exits_2_with_a_sentence(tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "agentledger", "api", "--dsn", f"http://127.0.0.1:{port}", "--data-dir",
         str(tmp_path / "data"), "--api-port", str(free_port())],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert f"agentledger api: cannot open ClickHouse at http://127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr
