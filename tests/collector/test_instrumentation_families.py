"""Each instrumentation family's real package (pinned in the dev extra) against a local fake LLM, its spans
through the collector's OTLP/HTTP receiver and default processors into chDB (issue 14's table): one run
per invocation, typed prompts with model and tokens, typed tool calls with their call id, the agent named,
content present, names rendered, and a Phoenix view that carries the tool calls and their results."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from agentledger.collector.config import HttpProtocolConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.exporters.phoenix_convert import span_attributes
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.schema.span_columns import SPAN_SCHEMA
from tests.collector import fake_openai
from tests.collector.fake_openai import fake_openai_server
from tests.conftest import otlp_ingest

pytestmark = pytest.mark.slow  # one instrumented app process per family

APP = Path(__file__).with_name("family_app.py")


@dataclass(frozen=True)
class Expected:
    family: str
    prompts: int
    # Timeline type of the span that executes the tool ("" when the family makes none: the app's own span).
    tool_span: str
    agent_name: str
    run_span: str


FAMILIES = [
    Expected("openllmetry", prompts=2, tool_span="tool_call", agent_name="refund", run_span="refund.workflow"),
    Expected("logfire-openai", prompts=1, tool_span="", agent_name="refund-bot", run_span="refund A-1001"),
    Expected("pydantic-ai", prompts=2, tool_span="tool_call", agent_name="refund_agent",
             run_span="invoke_agent refund_agent"),
    # The SDK's `Agent workflow` wrapper above the agent span is no second run entry.
    Expected("openai-agents", prompts=2, tool_span="tool_call", agent_name="refund_agent", run_span="refund_agent"),
]  # fmt: skip


@pytest.fixture
def collector(client: Client) -> Iterator[TestClient]:
    pipeline = Pipeline(
        [NormalizeProcessor(), RedactionProcessor(RedactionConfig())], [("clickhouse", ClickHouseExporter(client))]
    )
    yield TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, CollectorTelemetry())))


def _stored(client: Client) -> list[dict[str, Any]]:
    result = client.query(f"SELECT {', '.join(SPAN_SCHEMA.names)} FROM spans FINAL ORDER BY start_time")
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _tool_call_keys(attributes: dict[str, Any], suffix: str) -> set[Any]:
    return {value for key, value in attributes.items() if key.endswith(suffix)}


@pytest.mark.parametrize("expected", FAMILIES, ids=[family.family for family in FAMILIES])
def test_a_family_invocation_is_one_complete_typed_run(
    client: Client, collector: TestClient, tmp_path: Path, expected: Expected
) -> None:
    out = tmp_path / "spans.bin"
    with fake_openai_server() as openai_url:
        app = subprocess.run(
            [sys.executable, str(APP), expected.family, openai_url, str(out)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert app.returncode == 0, app.stderr
    protobuf = {"Content-Type": "application/x-protobuf"}
    response = collector.post("/v1/traces", content=out.read_bytes(), headers=protobuf)
    assert response.status_code == 200, response.text

    rows = _stored(client)
    assert len({row["run_id"] for row in rows}) == 1
    assert not [row["name"] for row in rows if "{" in row["name"]]
    # One run entry: the run span, or the trace's root when the family makes none.
    [run] = [row for row in rows if row["entry_type"] == "run"] or [row for row in rows if row["parent_span_id"] == ""]
    assert (run["name"], run["agent_name"]) == (expected.run_span, expected.agent_name)

    prompts = [row for row in rows if row["entry_type"] == "prompt"]
    assert len(prompts) == expected.prompts
    assert {(row["model"], row["input_tokens"], row["output_tokens"]) for row in prompts} == {
        ("gpt-4.1-mini", fake_openai.PROMPT_TOKENS, fake_openai.COMPLETION_TOKENS)
    }
    assert "Order A-1001 arrived broken." in prompts[0]["input_messages"]
    assert fake_openai.TOOL_CALL_ID in prompts[0]["output_messages"]

    # Phoenix sees the model's tool call, and the tool's result in the next turn, as OpenInference keys.
    first_turn = span_attributes(prompts[0])
    assert _tool_call_keys(first_turn, ".message.tool_calls.0.tool_call.id") == {fake_openai.TOOL_CALL_ID}
    assert _tool_call_keys(first_turn, ".message.tool_calls.0.tool_call.function.name") == {"issue_refund"}
    if expected.prompts > 1:
        second_turn = span_attributes(prompts[1])
        assert fake_openai.TOOL_CALL_ID in _tool_call_keys(second_turn, ".message.tool_call_id")
        assert fake_openai.FINAL_ANSWER in _tool_call_keys(second_turn, ".message.content")

    tools = [row for row in rows if row["entry_type"] == "tool_call"]
    if expected.tool_span:
        [tool] = tools
        assert (tool["tool_name"], tool["tool_call_id"]) == ("issue_refund", fake_openai.TOOL_CALL_ID)
        assert "A-1001" in tool["tool_arguments"]
        assert "refunded 42.00 on A-1001" in tool["tool_result"]
        tool_view = span_attributes(tool)
        assert (tool_view["openinference.span.kind"], tool_view["tool.name"]) == ("TOOL", "issue_refund")
        assert "refunded 42.00 on A-1001" in str(tool_view["output.value"])
    else:
        assert tools == []
