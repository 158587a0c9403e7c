"""Spans of a real third-party instrumentation (OpenInference's OpenAI instrumentor and tracer, from PyPI),
sent by an app without agentledger code to the real `agentledger up`, become a typed timeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collector import fake_openai
from tests.collector.fake_openai import fake_openai_server
from tests.conftest import RunningService, wait_for_timeline

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("third_party_app.py")


def test_openinference_openai_spans_become_a_typed_timeline(service: RunningService) -> None:
    session_id = "support-session-7"
    with fake_openai_server() as openai_url:
        app = subprocess.run(
            [sys.executable, str(APP), service.collector_url, openai_url, session_id],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert app.returncode == 0, app.stderr
    trace_id = app.stdout.strip()

    # The session is the run's conversation (namespaced by tenant and service); the run is the trace.
    body = wait_for_timeline(service.api_url, trace_id, entries=4)
    # The LLM span's input and output are the whole request and response bodies: checked apart.
    prompt_details = body["entries"][2]["details"]
    request, response = json.loads(prompt_details.pop("input")), json.loads(prompt_details.pop("output"))
    assert request["messages"][1] == {"role": "user", "content": "Order A-1001 arrived broken."}
    assert response["choices"][0]["message"]["tool_calls"][0]["id"] == fake_openai.TOOL_CALL_ID

    assert body["run"]["trace_ids"] == [trace_id]
    assert [(entry["type"], entry["name"], entry["details"]) for entry in body["entries"]] == [
        # No agent name attribute: the service speaks for the agent.
        ("run", "support-bot", {"agent_name": "support-bot"}),
        (
            "retrieval",
            "kb lookup",
            {
                "documents": '[{"id":"kb:refund-policy#v7","score":0.82,'
                '"content":"Refunds up to 100 EUR are automatic."}]',
                "input": "refund policy",
            },
        ),
        (
            "prompt",
            "ChatCompletion",
            {
                "model": fake_openai.RESPONSE_MODEL,
                "input_tokens": fake_openai.PROMPT_TOKENS,
                "output_tokens": fake_openai.COMPLETION_TOKENS,
                "input_messages": '[{"role":"system","content":"You are a refund agent."},'
                '{"role":"user","content":"Order A-1001 arrived broken."}]',
                "output_messages": '[{"role":"assistant","tool_calls":[{'
                f'"id":"{fake_openai.TOOL_CALL_ID}","function":{{"name":"issue_refund",'
                f'"arguments":{json.dumps(fake_openai.TOOL_ARGUMENTS)}}}}}]}}]',
            },
        ),
        (
            "tool_call",
            "issue_refund",
            {
                "tool_name": "issue_refund",
                # Not on the tool span: the model's tool call of that name in its trace names it.
                "tool_call_id": fake_openai.TOOL_CALL_ID,
                "arguments": '{"order_id": "A-1001", "amount": 42.0}',
                "result": "refunded 42.00 on A-1001",
                "input": '{"order_id": "A-1001", "amount": 42.0}',
                "output": "refunded 42.00 on A-1001",
            },
        ),
    ]
    assert all(entry["trace_id"] == trace_id for entry in body["entries"])
    assert {entry["service_name"] for entry in body["entries"]} == {"support-bot"}
