"""The walking skeleton end to end: the real `agentledger up` process, spans sent with the OpenTelemetry
SDK's own OTLP/HTTP exporter, the run read back from the timeline endpoint and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind

from agentledger.schema import conventions as conv
from tests.conftest import RunningService, sdk_tracer_provider, wait_for_timeline

pytestmark = pytest.mark.slow

RUN_ID = "run_e2e_0001"


def _send_run_over_two_traces(collector_url: str) -> tuple[str, str]:
    provider = sdk_tracer_provider(collector_url)
    tracer = provider.get_tracer("tests")
    run = {conv.AGENT_RUN_ID: RUN_ID, conv.GEN_AI_AGENT_ID: "agent-7"}
    with tracer.start_as_current_span(
        "invoke_agent triage", attributes={**run, conv.GEN_AI_OPERATION_NAME: "invoke_agent"}
    ) as root1:
        with tracer.start_as_current_span(
            "chat small-model",
            kind=SpanKind.CLIENT,
            attributes={
                **run,
                conv.GEN_AI_OPERATION_NAME: "chat",
                conv.AGENTLEDGER_PROMPT_CONTEXT_HASH: "sha256:ab12",
                conv.GEN_AI_INPUT_MESSAGES: '[{"role":"user"}]',
            },
        ):
            # A third-party child span: no run id, found through its trace.
            with tracer.start_as_current_span("HTTP POST", kind=SpanKind.CLIENT):
                pass
        with tracer.start_as_current_span(
            "approval update_record",
            attributes={
                **run,
                conv.AGENTLEDGER_SPAN_TYPE: "approval",
                conv.AGENTLEDGER_APPROVAL_DECISION: "approved",
                conv.AGENTLEDGER_APPROVAL_APPROVER: "user:ops",
            },
        ):
            pass
    with tracer.start_as_current_span(
        "invoke_agent triage", attributes={**run, conv.GEN_AI_OPERATION_NAME: "invoke_agent"}
    ) as root2:
        with tracer.start_as_current_span(
            "execute_tool update_record",
            attributes={
                **run,
                conv.GEN_AI_OPERATION_NAME: "execute_tool",
                conv.GEN_AI_TOOL_NAME: "update_record",
                conv.AGENTLEDGER_TOOL_ACCESS: "write",
                conv.AGENTLEDGER_TOOL_TARGET: "crm:C-1",
                conv.GEN_AI_TOOL_CALL_ARGUMENTS: '{"id": "C-1"}',
            },
        ):
            pass
    # Another run in between must not leak into this one.
    with tracer.start_as_current_span("invoke_agent other", attributes={conv.AGENT_RUN_ID: "run_other"}):
        pass
    provider.shutdown()
    return (format(root1.get_span_context().trace_id, "032x"), format(root2.get_span_context().trace_id, "032x"))


def test_sdk_spans_of_one_run_over_two_traces_come_back_in_order_and_typed(service: RunningService) -> None:
    trace_1, trace_2 = _send_run_over_two_traces(service.collector_url)

    body = wait_for_timeline(service.api_url, RUN_ID, 6)

    assert body["run"]["run_id"] == RUN_ID
    assert body["run"]["agent_id"] == "agent-7"
    assert body["run"]["trace_ids"] == sorted([trace_1, trace_2])
    entries = body["entries"]
    assert [(e["type"], e["name"]) for e in entries] == [
        ("run", "invoke_agent triage"),
        ("prompt", "chat small-model"),
        ("span", "HTTP POST"),
        ("approval", "approval update_record"),
        ("run", "invoke_agent triage"),
        ("tool_call", "execute_tool update_record"),
    ]
    assert [e["trace_id"] for e in entries] == [trace_1] * 4 + [trace_2] * 2
    starts = [e["start_unix_nano"] for e in entries]
    assert starts == sorted(starts)
    assert entries[1]["details"] == {
        "operation": "chat",
        "context_hash": "sha256:ab12",
        "input_messages": '[{"role":"user"}]',
    }
    assert entries[3]["details"] == {"decision": "approved", "approver": "user:ops"}
    assert entries[5]["details"] == {
        "tool_name": "update_record",
        "access": "write",
        "target": "crm:C-1",
        "arguments": '{"id": "C-1"}',
    }
    # Big content lives in its own column, not in the attributes map.
    assert conv.GEN_AI_TOOL_CALL_ARGUMENTS not in entries[5]["attributes"]


def test_unknown_run_is_404_with_a_message(service: RunningService) -> None:
    response = httpx.get(f"{service.api_url}/v1/runs/run_nope/timeline", timeout=10)

    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'run_nope'"}


def test_cli_demo_and_timeline_go_through_the_running_service(service: RunningService) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "agentledger", "demo", "--collector-url", service.collector_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    run_id = demo.stdout.split("\t", 1)[0]
    assert run_id.startswith("run_")
    wait_for_timeline(service.api_url, run_id, 9)

    timeline = subprocess.run(
        [sys.executable, "-m", "agentledger", "timeline", run_id, "--api-url", service.api_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert timeline.returncode == 0, timeline.stderr
    lines = timeline.stdout.splitlines()
    assert lines[0].startswith(f"run {run_id}  agent refund-agent  outcome success  traces 2  spans 9  writes 0")
    assert lines[2] == "integrity intact (1 links, 9 spans checked)"
    # No downstream system reported the refund in this test (the demo posted no writes to this API).
    assert lines[3:5] == ["findings 1", lines[4]] and "unconfirmed_write_call" in lines[4]
    assert [line.split()[1] for line in lines[5:] if line[:4].isdigit()] == [
        "run", "retrieval", "tool_call", "prompt", "policy_decision", "run", "approval", "tool_call",
        "downstream_write",
    ]  # fmt: skip


def test_cli_timeline_of_unknown_run_exits_1_with_a_sentence(service: RunningService) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentledger", "timeline", "run_missing", "--api-url", service.api_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr == "agentledger timeline: no run with id 'run_missing'\n"


def test_sigterm_stops_cleanly_and_data_survives_a_restart(service: RunningService) -> None:
    _send_run_over_two_traces(service.collector_url)
    wait_for_timeline(service.api_url, RUN_ID, 6)

    assert service.stop() == 0
    assert "stopped" in service.log()

    from tests.conftest import start_service

    restarted = start_service(service.data_dir)
    try:
        response = httpx.get(f"{restarted.api_url}/v1/runs/{RUN_ID}/timeline", timeout=10)
        assert response.status_code == 200
        assert len(response.json()["entries"]) == 6
    finally:
        assert restarted.stop() == 0


def test_cli_verify_reports_an_intact_run(service: RunningService) -> None:
    _send_run_over_two_traces(service.collector_url)
    wait_for_timeline(service.api_url, RUN_ID, 6)

    result = subprocess.run(
        [sys.executable, "-m", "agentledger", "verify", RUN_ID, "--api-url", service.api_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"run {RUN_ID}: intact (")
    # Every span the timeline shows is checked, the id-less HTTP child (chained under no run) included.
    assert "6 spans checked" in result.stdout


def test_cli_checkpoint_prints_the_logs_checkpoints_and_verifies_them(service: RunningService) -> None:
    _send_run_over_two_traces(service.collector_url)
    wait_for_timeline(service.api_url, RUN_ID, 6)
    collector_id = (service.data_dir / "collector_id").read_text().strip()

    printed = subprocess.run(
        [sys.executable, "-m", "agentledger", "checkpoint", "--data-dir", str(service.data_dir), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    verified = subprocess.run(
        [sys.executable, "-m", "agentledger", "checkpoint", "verify", "--api-url", service.api_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert printed.returncode == 0, printed.stderr
    checkpoints = json.loads(printed.stdout)
    assert [(c["tenant"], c["collector_id"]) for c in checkpoints] == [("default", collector_id)]
    assert checkpoints[0]["size"] >= 1 and checkpoints[0]["root"].startswith("sha256:")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("tenant default: consistent\n")


def test_cli_export_writes_a_bundle(service: RunningService, tmp_path: Path) -> None:
    import zipfile

    _send_run_over_two_traces(service.collector_url)
    wait_for_timeline(service.api_url, RUN_ID, 6)
    output = tmp_path / "bundle.zip"

    result = subprocess.run(
        [sys.executable, "-m", "agentledger", "export", RUN_ID, "-o", str(output), "--api-url", service.api_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "manifest.json" in zipfile.ZipFile(output).namelist()
