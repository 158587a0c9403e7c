"""`opentelemetry-instrumentation-openai-v2` (the OTel GenAI family, pinned in the dev extra), driving the
openai client against a local fake LLM from an app without agentledger code, sent to the real `agentledger up`:
one run per invocation, typed prompts, tokens, model and tool calls, the agent named, content present whether
it rides on the spans or in log events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.collector import fake_openai
from tests.collector.fake_openai import fake_openai_server
from tests.conftest import RunningService, start_service, wait_for_timeline

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("openai_v2_app.py")
CALLS = 5


def _run_app(collector_url: str, mode: str, content: str) -> list[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": content,
    }
    with fake_openai_server() as openai_url:
        app = subprocess.run(
            [sys.executable, str(APP), collector_url, openai_url, mode, str(CALLS)],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
    assert app.returncode == 0, app.stderr
    return app.stdout.split()


def _runs(api_url: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = httpx.get(f"{api_url}/v1/runs", params={"limit": 100}, timeout=10).json()["runs"]
    return runs


def test_an_agent_invocation_is_one_typed_run_with_content_on_its_spans(service: RunningService) -> None:
    [trace_id] = _run_app(service.collector_url, "agent", "SPAN_ONLY")

    body = wait_for_timeline(service.api_url, trace_id, entries=1 + 2 * CALLS)

    assert [run["run_id"] for run in _runs(service.api_url)] == [trace_id]
    assert body["run"]["agent_name"] == "refund-bot"  # no gen_ai.agent.name: the service speaks for the agent
    entries = body["entries"]
    assert [entry["type"] for entry in entries] == ["run"] + ["prompt", "tool_call"] * CALLS
    prompt, tool = entries[1], entries[2]
    assert (prompt["details"]["model"], prompt["details"]["input_tokens"], prompt["details"]["output_tokens"]) == (
        "gpt-4.1-mini", fake_openai.PROMPT_TOKENS, fake_openai.COMPLETION_TOKENS,  # the requested model
    )  # fmt: skip
    assert json.loads(prompt["details"]["input_messages"])[1] == {
        "role": "user", "parts": [{"content": "Order A-1001 arrived broken.", "type": "text"}],
    }  # fmt: skip
    [tool_call] = json.loads(prompt["details"]["output_messages"])[0]["parts"]
    expected_call = ("tool_call", fake_openai.TOOL_CALL_ID, "issue_refund")
    assert (tool_call["type"], tool_call["id"], tool_call["name"]) == expected_call
    assert (tool["name"], tool["details"]["tool_name"], tool["details"]["result"]) == (
        "execute_tool issue_refund", "issue_refund", "refunded A-1001",
    )  # fmt: skip
    assert tool["details"]["tool_call_id"] == fake_openai.TOOL_CALL_ID


def test_content_sent_as_log_events_lands_under_its_span(service: RunningService) -> None:
    [trace_id] = _run_app(service.collector_url, "agent", "EVENT_ONLY")

    # Each model call's gen_ai.client.inference.operation.details event is a row under its chat span.
    body = wait_for_timeline(service.api_url, trace_id, entries=1 + 3 * CALLS)

    entries = body["entries"]
    prompts = [entry for entry in entries if entry["type"] == "prompt"]
    events = [entry for entry in entries if entry["name"] == "gen_ai.client.inference.operation.details"]
    assert (len(prompts), len(events)) == (CALLS, CALLS)
    assert {event["parent_span_id"] for event in events} == {prompt["span_id"] for prompt in prompts}
    assert all("input_messages" not in prompt["details"] for prompt in prompts)
    event = events[0]
    assert json.loads(event["details"]["input_messages"])[1]["parts"][0]["content"] == "Order A-1001 arrived broken."
    assert json.loads(event["details"]["output_messages"])[0]["parts"][0]["id"] == fake_openai.TOOL_CALL_ID
    # The event counts no tokens of its own: the run's tokens are the prompts' only.
    assert all(event["details"].get("input_tokens", 0) == 0 for event in events)


def test_model_calls_without_any_parent_span_are_one_run_per_process_when_configured(tmp_path: Path) -> None:
    # A script calling the model CALLS times opens no span: CALLS traces that share nothing but the process.
    # service.instance.id (the SDK sets one per process) then names the invocation.
    config = tmp_path / "agentledger.yaml"
    config.write_text("processors:\n  normalize:\n    run_id_from: [service.instance.id, trace_id]\n")
    service = start_service(tmp_path / "data", "--config", str(config))
    try:
        _run_app(service.collector_url, "bare", "SPAN_ONLY")
        runs = []
        for _ in range(100):
            runs = _runs(service.api_url)
            if runs and runs[0]["span_count"] == CALLS:
                break
            subprocess.run(["sleep", "0.1"], check=True)
    finally:
        service.stop()
    assert [(run["span_count"], run["agent_name"]) for run in runs] == [(CALLS, "refund-bot")]
