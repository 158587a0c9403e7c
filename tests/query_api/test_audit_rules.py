"""Audit rules on runs written with the emitter (real OTel SDK, real pipeline into chDB): the approval
variants, the catalogue overriding what agents declare, users' own rules, budgets and inference fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.config import ConfigError
from agentledger.emitter import ContentCapture, agent_run, approval, prompt, tool_call
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.audit_config import AuditConfig, JsonPathError, extract, parse_json_path
from agentledger.schema.conventions import (
    ApprovalDecisionValues,
    RunAutonomyLevelValues,
    ToolAccessValues,
)
from agentledger.settings import load_settings
from tests.query_api.incidents import ingest

WRITE = ToolAccessValues.WRITE
ARGUMENTS = {"customer": {"id": "C-1"}, "amount": 50.0}


def _record(client: Client, build: Callable[[TracerProvider], str]) -> str:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run_id = build(provider)
    ingest(client, exporter.get_finished_spans())
    return run_id


def _api(client: Client, **audit: Any) -> TestClient:
    # These runs have no downstream-write integration: every write call would be unconfirmed, so that rule is off.
    audit.setdefault("rules", {"unconfirmed_write_call": {"enabled": False}})
    return TestClient(create_app(client, QueryApiConfig(audit=AuditConfig.model_validate(audit))))


def _findings(api: TestClient, run_id: str) -> list[tuple[str, str]]:
    body = api.get(f"/v1/runs/{run_id}/audit").json()
    return [(f["rule"], f["message"]) for f in body["findings"]]


def _run(provider: TracerProvider, autonomy: RunAutonomyLevelValues, task: str = "Update customer C-1") -> agent_run:
    # Full content capture: the catalogue reads targets out of the recorded arguments.
    return agent_run("crm-agent", task=task, autonomy=autonomy, tracer_provider=provider, subjects=["crm:customer/C-1"],
                     capture=ContentCapture.FULL)  # fmt: skip


def test_approval_given_after_the_call_and_a_call_run_after_a_rejection(client: Client) -> None:
    def late(provider: TracerProvider) -> str:
        with _run(provider, RunAutonomyLevelValues.APPROVE_WRITES) as run:
            with tool_call("update_customer", access=WRITE, arguments=ARGUMENTS, target="crm:customer/C-1",
                           call_id="call_late"):  # fmt: skip
                pass
            with approval("update_customer", tool_call_id="call_late", arguments=ARGUMENTS) as request:
                request.decide(ApprovalDecisionValues.APPROVED, "user:ann")
        return run.run_id

    def after_rejection(provider: TracerProvider) -> str:
        with _run(provider, RunAutonomyLevelValues.APPROVE_WRITES) as run:
            with approval("update_customer", tool_call_id="call_rej", arguments=ARGUMENTS) as request:
                request.decide(ApprovalDecisionValues.REJECTED, "user:ann", "not this customer")
            with tool_call("update_customer", access=WRITE, arguments=ARGUMENTS, target="crm:customer/C-1",
                           call_id="call_rej"):  # fmt: skip
                pass
        return run.run_id

    late_run, rejected_run = _record(client, late), _record(client, after_rejection)
    api = _api(client)

    assert _findings(api, late_run) == [
        ("missing_approval", "write tool call 'update_customer' (call_late) has no human approval; autonomy level"
                             " approve_writes requires one"),
        ("approval_mismatch", "the approval of tool call 'update_customer' (call_late) (approved by user:ann) was"
                              " given after the call had started"),
    ]  # fmt: skip
    assert _findings(api, rejected_run) == [
        ("missing_approval", "write tool call 'update_customer' (call_rej) has no human approval; autonomy level"
                             " approve_writes requires one"),
        ("approval_mismatch", "tool call 'update_customer' (call_rej) ran after its approval was rejected by user:ann"),
        ("approval_rejected", "user:ann rejected 'update_customer' (call_rej): not this customer"),
    ]  # fmt: skip


def test_the_catalogue_overrides_declared_access_and_extracts_the_target(client: Client) -> None:
    def declared_read(provider: TracerProvider) -> str:
        with _run(provider, RunAutonomyLevelValues.APPROVE_WRITES) as run:
            with tool_call("crm_update_email", access=ToolAccessValues.READ, arguments={"customer": {"id": "C-2"}}):
                pass
        return run.run_id

    run_id = _record(client, declared_read)
    catalogue = {"*": {"tools": [{"tool": "crm_update_*", "access": "write", "target": "$.customer.id",
                                  "target_prefix": "crm:customer/"}]}}  # fmt: skip

    assert _findings(_api(client), run_id) == []
    found = _findings(_api(client, tool_catalogue=catalogue), run_id)
    assert [rule for rule, _ in found] == ["missing_approval", "target_mismatch", "access_mismatch"]
    assert found[1][1] == (
        "write tool call 'crm_update_email' acted on crm:customer/C-2, but the run is about crm:customer/C-1"
    ).replace("'crm_update_email'", f"'crm_update_email' ({_call_id(client, run_id)})")
    assert found[2][1].startswith("the agent declared 'crm_update_email' (")
    assert found[2][1].endswith(") as read, the tool catalogue says write (entry 'crm_update_*')")


def _call_id(client: Client, run_id: str) -> str:
    sql = "SELECT any(tool_call_id) FROM spans WHERE run_id = {r:String} AND entry_type = 'tool_call'"
    return str(client.command(sql, parameters={"r": run_id}))


def test_user_rules_budgets_and_rule_settings_from_config(client: Client) -> None:
    def build(provider: TracerProvider) -> str:
        with _run(provider, RunAutonomyLevelValues.AUTONOMOUS) as run:
            with prompt("gpt-4.1", [{"role": "user", "content": "hi"}]) as call:
                call.record_response([{"role": "assistant", "content": "ok"}], input_tokens=9_000, output_tokens=1_500)
            for _ in range(3):
                with tool_call("s3_delete_object", access=ToolAccessValues.DESTRUCTIVE, arguments={"key": "a/1"},
                               target="s3:bucket/b"):  # fmt: skip
                    pass
        return run.run_id

    run_id = _record(client, build)
    api = _api(
        client,
        loop_threshold=3,
        rules={"loop": {"severity": "critical"}, "unconfirmed_write_call": {"enabled": False}},
        user_rules=[{"id": "no-s3-deletes", "severity": "high", "description": "Agents do not delete S3 objects.",
                     "when": {"tool": "s3_delete_*", "access": "destructive"},
                     "message": "{tool_name} deleted in {target}"}],
        cost={"budgets": {"crm-agent": {"max_tokens": 10_000}}},
    )  # fmt: skip
    body = api.get(f"/v1/runs/{run_id}/audit").json()

    assert [(f["rule"], f["severity"], f["message"]) for f in body["findings"]] == [
        ("loop", "critical", "destructive tool 's3_delete_object' was called 3 times with the same arguments"
                             " (no attempt counter sent: counted by tool and arguments hash), 0 of them failed"),
        ("cost_anomaly", "medium", "the run used 10,500 tokens; agent crm-agent's budget is 10,000 per run"),
        *[("no-s3-deletes", "high", "s3_delete_object deleted in s3:bucket/b")] * 3,
    ]  # fmt: skip
    rules = {rule["id"]: rule for rule in body["rules"]}
    assert "unconfirmed_write_call" not in rules
    assert rules["no-s3-deletes"] == {"id": "no-s3-deletes", "severity": "high", "version": 1, "origin": "user",
                                      "description": "Agents do not delete S3 objects."}  # fmt: skip


def test_target_mismatch_falls_back_to_ids_in_the_task_text_and_says_so(client: Client) -> None:
    def build(provider: TracerProvider) -> str:
        with agent_run("crm-agent", task="Close the duplicate account C-100", tracer_provider=provider,
                       autonomy=RunAutonomyLevelValues.AUTONOMOUS) as run:  # fmt: skip
            with tool_call("close_account", access=WRITE, arguments={"account": "C-200"}, target="crm:account/C-200",
                           call_id="call_close"):  # fmt: skip
                pass
        return run.run_id

    assert _findings(_api(client), _record(client, build)) == [
        ("target_mismatch", "write tool call 'close_account' (call_close) acted on crm:account/C-200, while the task"
                            " names C-100 (inferred from the task text; the run declares no subjects)"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api:\n  audit:\n    rules: {loops: {enabled: false}}\n",
         "api.audit: Value error, rules: unknown rule id(s) loops"),
        ("api:\n  audit:\n    tool_catalogue: {'*': {tools: [{tool: x, access: write, target: customer.id}]}}\n",
         "api.audit.tool_catalogue.*.tools.0.target: Value error, 'customer.id' does not start with $"),
        ("api:\n  audit:\n    tool_catalogue: {'*': {tools: [{tool: x, access: delete}]}}\n",
         "api.audit.tool_catalogue.*.tools.0.access: Input should be 'read', 'write' or 'destructive'"),
        ("api:\n  audit:\n    user_rules: [{id: loop, description: d, when: {}, message: m}]\n",
         "user_rules: id(s) loop are built-in rule ids"),
        ("api:\n  audit:\n    loop_threshold: 1\n",
         "api.audit.loop_threshold: Input should be greater than or equal to 2"),
    ],
)  # fmt: skip
def test_bad_audit_config_fails_at_startup_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agentledger.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings({"config": path}, environ={})

    assert message in str(error.value)


def test_json_path_subset() -> None:
    assert parse_json_path("$.customer['x-id'][0]") == ("customer", "x-id", 0)
    assert extract({"customer": {"x-id": ["C-9"]}}, parse_json_path("$.customer['x-id'][0]")) == "C-9"
    assert extract({"customer": []}, parse_json_path("$.customer.id")) is None
    with pytest.raises(JsonPathError, match=r"cannot read a step at character 1"):
        parse_json_path("$..id")
