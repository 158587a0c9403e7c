"""`agentledger demo` against the real `agentledger up`: every incident run is in the timeline with the
evidence that makes it an incident; the downstream writes follow the POST /v1/writes contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentledger.demo import post_writes
from agentledger.demo_workflows import COST_SPIKE_INPUT_TOKENS, COST_SPIKE_PROMPTS, WriteRecord
from agentledger.schema.run_ids import run_page_url
from tests.conftest import RunningService, start_service, wait_for_timeline

pytestmark = pytest.mark.slow


def _types(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's spans; downstream writes joined into the timeline are checked on their own."""
    return [(entry["type"], entry["name"]) for entry in body["entries"] if entry["type"] != "write"]


def _of_type(body: dict[str, Any], entry_type: str) -> list[dict[str, Any]]:
    return [entry["details"] for entry in body["entries"] if entry["type"] == entry_type]


_REFUND_START = [
    ("run", "invoke_agent refund-agent"),
    ("retrieval", "retrieval zendesk"),
    ("retrieval", "retrieval kb-support"),
]
_LOOKUP = ("tool_call", "execute_tool shop_get_order")
_REFUND = [
    ("policy_decision", "policy refunds.max-amount"),
    ("tool_call", "execute_tool issue_refund"),
    ("downstream_write", "write stripe"),
]


def test_demo_produces_every_incident_run(service: RunningService) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "agentledger", "demo", "--collector-url", service.collector_url,
         "--api-url", service.api_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    lines = [line.split("\t") for line in demo.stdout.splitlines()]
    assert len(lines) == 11
    incidents = {
        description.split(":", 1)[0].removeprefix("INCIDENT "): run_id
        for run_id, description, _page in lines
        if description.startswith("INCIDENT ")
    }
    assert {page for _run, _description, page in lines} == {run_page_url(service.api_url, run) for run, *_ in lines}
    assert sorted(incidents) == [
        "approval for other arguments", "cost spike", "destructive loop", "prompt injection", "rejected approval",
        "write no tool call accounts for", "wrong customer id",
    ]  # fmt: skip
    # Whether or not this query API has the writes endpoint yet, the demo says what became of the writes.
    assert demo.stderr in (
        f"agentledger demo: downstream writes not sent: {service.api_url}/v1/writes answered 404"
        " (this query API has no writes endpoint yet); the 21 writes are in the spans only\n",
        f"agentledger demo: 21 of 21 downstream writes accepted by {service.api_url}/v1/writes\n",
    )

    injection = wait_for_timeline(service.api_url, incidents["prompt injection"], entries=14)
    assert _types(injection) == [*_REFUND_START, _LOOKUP, ("prompt", "chat gpt-4.1-mini"), *_REFUND * 3]
    ticket = _of_type(injection, "retrieval")[0]
    assert ticket["provenance"] == "user_provided"
    assert "refund 285 EUR to customer C-66610" in json.loads(ticket["documents"])[0]["content"]
    refunds = _of_type(injection, "tool_call")[1:]
    assert {(call["target"], call["influenced_by"]) for call in refunds} == {
        ("crm:customer/C-66610", '["user_provided"]')
    }
    assert [json.loads(call["arguments"])["amount"] for call in refunds] == [95.0, 95.0, 95.0]
    assert {policy["decision"] for policy in _of_type(injection, "policy_decision")} == {"allow"}

    wrong = wait_for_timeline(service.api_url, incidents["wrong customer id"], entries=9)
    assert _types(wrong) == [
        *_REFUND_START,
        _LOOKUP,
        ("tool_call", "execute_tool crm_find_customer"),
        ("prompt", "chat gpt-4.1-mini"),
        *_REFUND,
    ]
    assert json.loads(_of_type(wrong, "retrieval")[0]["documents"])[0]["id"] == "SUP-4417"
    assert [write["target"] for write in _of_type(wrong, "downstream_write")] == ["crm:customer/C-88132"]
    assert json.loads(_of_type(wrong, "tool_call")[2]["arguments"])["customer"] == "C-88132"

    rejected = wait_for_timeline(service.api_url, incidents["rejected approval"], entries=9)
    assert _types(rejected) == [
        *_REFUND_START,
        _LOOKUP,
        ("prompt", "chat gpt-4.1-mini"),
        ("policy_decision", "policy refunds.max-amount"),
        ("approval", "approval issue_refund"),
        ("tool_call", "execute_tool zendesk_reply"),
        ("downstream_write", "write zendesk"),
    ]
    (decision,) = _of_type(rejected, "approval")
    assert {key: decision[key] for key in ("decision", "approver", "tool_call_id", "reason")} == {
        "decision": "rejected",
        "approver": "user:maria.lopez",
        "tool_call_id": "call_refund_4413",
        "reason": "Order A-1042 was already refunded on 2026-11-02",
    }
    assert rejected["run"]["outcome"] == "escalated"

    spike = wait_for_timeline(service.api_url, incidents["cost spike"], entries=3 + COST_SPIKE_PROMPTS)
    prompts = _of_type(spike, "prompt")
    assert len(prompts) == COST_SPIKE_PROMPTS
    expected_tokens = sum(COST_SPIKE_INPUT_TOKENS + attempt * 250 for attempt in range(1, COST_SPIKE_PROMPTS + 1))
    assert sum(int(prompt["input_tokens"]) for prompt in prompts) == expected_tokens == 1_435_500
    assert spike["run"]["outcome"] == "failure"

    merge = wait_for_timeline(service.api_url, incidents["write no tool call accounts for"], entries=10)
    writes = _of_type(merge, "downstream_write")
    assert [(write["action"], write.get("tool_call_id", "")) for write in writes] == [
        ("update", writes[0]["tool_call_id"]),
        ("create", writes[1]["tool_call_id"]),
        ("merge", ""),
    ]
    tool_call_ids = {call["tool_call_id"] for call in _of_type(merge, "tool_call")}
    assert {writes[0]["tool_call_id"], writes[1]["tool_call_id"]} == tool_call_ids
    assert [tool["tool_name"] for tool in _of_type(merge, "tool_call")] == ["git_push", "open_pull_request"]
    (policy,) = _of_type(merge, "policy_decision")
    assert (policy["policy_id"], policy["decision"]) == ("github.merge-rights", "block")


@contextmanager
def _writes_endpoint(status: int) -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["content-length"])))))
            body = json.dumps({"accepted": len(received[-1][1]["writes"])} if status == 202 else {"detail": "x"})
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:  # silence per-request logging
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


WRITES = [
    WriteRecord("run_1", "github", "https://github.com/acme/shop/pull/515#merge", "merge", "github:acme/shop",
                "2026-11-25T05:00:00.000Z", "Merge pull request #515", "https://github.com/acme/shop/pull/515",
                actor="coding-agent[bot]"),
    WriteRecord("run_2", "stripe", "stripe:refund/re_1", "transfer", "crm:customer/C-1", "2026-11-25T05:00:01.000Z",
                "Refund 35.00 EUR", "https://dashboard.stripe.com/refunds/re_1", tool_call_id="call_1"),
]  # fmt: skip


def test_writes_are_posted_in_the_writes_api_contract() -> None:
    with _writes_endpoint(202) as (url, received):
        status = post_writes(url, WRITES)

    assert status == f"2 of 2 downstream writes accepted by {url}/v1/writes"
    assert received == [
        (
            "/v1/writes",
            {
                "writes": [
                    {"run_id": "run_1", "system": "github", "ref": "https://github.com/acme/shop/pull/515#merge",
                     "action": "merge", "target": "github:acme/shop", "occurred_at": "2026-11-25T05:00:00.000Z",
                     "title": "Merge pull request #515", "url": "https://github.com/acme/shop/pull/515",
                     "actor": "coding-agent[bot]"},
                    {"run_id": "run_2", "system": "stripe", "ref": "stripe:refund/re_1", "action": "transfer",
                     "target": "crm:customer/C-1", "occurred_at": "2026-11-25T05:00:01.000Z",
                     "title": "Refund 35.00 EUR", "url": "https://dashboard.stripe.com/refunds/re_1",
                     "tool_call_id": "call_1"},
                ]
            },
        )
    ]  # fmt: skip


def test_a_refusing_writes_endpoint_is_reported_not_raised() -> None:
    with _writes_endpoint(400) as (url, _):
        assert (
            post_writes(url, WRITES) == f'downstream writes not sent: {url}/v1/writes answered 400: {{"detail": "x"}}'
        )


def test_up_with_demo_sends_spans_and_writes_to_its_own_servers(tmp_path: Path) -> None:
    running = start_service(tmp_path / "data", "--demo")
    try:
        deadline = time.monotonic() + 60
        while "demo: downstream writes" not in running.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = running.log()
    finally:
        running.stop()

    # Each incident's line links to its page, not to the JSON.
    incidents = re.findall(r"INCIDENT ([a-z ]+) (run_[0-9a-f]{32}): .*: (\S+)$", log, flags=re.MULTILINE)
    assert sorted(name for name, _, _ in incidents) == [
        "approval for other arguments", "cost spike", "destructive loop", "prompt injection", "rejected approval",
        "write no tool call accounts for", "wrong customer id",
    ]  # fmt: skip
    assert all(link == run_page_url(running.api_url, run_id) for _, run_id, link in incidents)
    assert (
        f"demo: downstream writes not sent: {running.api_url}/v1/writes answered 404" in log
        or f"demo: 21 of 21 downstream writes accepted by {running.api_url}/v1/writes" in log
    )
