"""Annotation sync with a real Arize Phoenix: reviewers' annotations posted through Phoenix's API appear on
our timeline after a sync, a second sync adds nothing, and our verification result appears in Phoenix as a
CODE annotation; timeline entries link to their span in Phoenix's UI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentledger.query_api.models import ChainBreak, SpanFinding, Verification
from agentledger.query_api.phoenix_sync import findings_annotations
from agentledger.schema.run_ids import run_page_url
from tests.conftest import (
    RunningPhoenix,
    phoenix_config,
    send_reviewed_run,
    start_service,
    wait_for_phoenix_spans,
    wait_for_timeline,
)

pytestmark = pytest.mark.slow


def annotate(phoenix_url: str, span_id: str, name: str, kind: str, label: str, score: float, why: str) -> None:
    response = httpx.post(
        f"{phoenix_url}/v1/span_annotations",
        params={"sync": "true"},
        json={"data": [{"span_id": span_id, "name": name, "annotator_kind": kind,
                        "result": {"label": label, "score": score, "explanation": why}}]},
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text


def phoenix_annotations(phoenix_url: str, project: str, span_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{phoenix_url}/v1/projects/{project}/span_annotations", params={"span_ids": [span_id]})
    response.raise_for_status()
    return list(response.json()["data"])


def entry_annotations(timeline: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entry = next(entry for entry in timeline["entries"] if entry["name"] == name)
    return [
        {key: value for key, value in annotation.items() if key not in ("created_at", "updated_at")}
        for annotation in entry["annotations"]
    ]


def sync_cli(api_url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agentledger", "phoenix-sync", "--api-url", api_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_reviewers_annotations_reach_the_timeline_once_and_findings_reach_phoenix(
    phoenix: RunningPhoenix, tmp_path: Path
) -> None:
    project = "sync-test"
    run_id = "run_phoenix_sync_0001"
    # The background sync off: this test runs each sync itself.
    config = phoenix_config(tmp_path, phoenix.url, project, extra="    sync: {enabled: false}")
    service = start_service(tmp_path / "data", "--config", str(config))
    try:
        send_reviewed_run(service.collector_url, run_id)
        timeline = wait_for_timeline(service.api_url, run_id, 7)
        spans = {entry["name"]: entry["span_id"] for entry in timeline["entries"]}
        wait_for_phoenix_spans(phoenix.url, project, timeline["entries"][0]["trace_id"], 7)
        annotate(phoenix.url, spans["execute_tool issue_refund"], "correctness", "HUMAN", "wrong_customer", 0.0,
                 "refund went to C-88132, the ticket is C-88123's")  # fmt: skip
        annotate(phoenix.url, spans["chat gpt-4.1-mini"], "hallucination", "LLM", "factual", 1.0, "grounded")

        assert sync_cli(service.api_url) == (
            "pulled 2 annotation(s) from Phoenix (0 unchanged); verified 1 run(s), pushed 2 finding annotation(s)"
        )
        first = httpx.get(f"{service.api_url}/v1/runs/{run_id}/timeline", timeout=10).json()
        again = httpx.post(f"{service.api_url}/v1/phoenix/sync", timeout=60).json()
        second = httpx.get(f"{service.api_url}/v1/runs/{run_id}/timeline", timeout=10).json()
        run_span_annotations = phoenix_annotations(phoenix.url, project, spans["invoke_agent refund-agent"])
        links = httpx.get(f"{service.api_url}/v1/runs/{run_id}/verify", timeout=10).json()["links"]
        audit = httpx.get(f"{service.api_url}/v1/runs/{run_id}/audit", timeout=10).json()
        tool_annotations = phoenix_annotations(phoenix.url, project, spans["execute_tool issue_refund"])
    finally:
        service.stop()

    assert again == {"pulled": 0, "unchanged": 2, "runs_verified": 1, "pushed": 0, "push_failures": 0}
    assert second == first
    assert entry_annotations(first, "execute_tool issue_refund") == [
        {"name": "correctness", "label": "wrong_customer", "score": 0.0,
         "explanation": "refund went to C-88132, the ticket is C-88123's", "annotator_kind": "HUMAN",
         "annotator": "phoenix api", "source": "phoenix"},
    ]  # fmt: skip
    assert entry_annotations(first, "chat gpt-4.1-mini") == [
        {"name": "hallucination", "label": "factual", "score": 1.0, "explanation": "grounded",
         "annotator_kind": "LLM", "annotator": "phoenix api", "source": "phoenix"},
    ]  # fmt: skip
    assert sum(len(entry["annotations"]) for entry in first["entries"]) == 2
    for entry in first["entries"]:
        assert entry["phoenix_url"] == f"{phoenix.url}/redirects/spans/{entry['span_id']}"

    # The audit's finding (no downstream system confirmed the refund) is on the tool call in Phoenix too.
    assert [(f["check"], f["span_id"]) for f in audit["findings"]] == [
        ("unconfirmed_write_call", spans["execute_tool issue_refund"])
    ]
    [pushed_finding] = [a for a in tool_annotations if a["name"] == "agentledger.audit"]
    assert (pushed_finding["annotator_kind"], pushed_finding["result"]["label"], pushed_finding["result"]["score"]) == (
        "CODE", "unconfirmed_write_call", 0.0,
    )  # fmt: skip
    assert pushed_finding["result"]["explanation"] == audit["findings"][0]["message"]

    [verification] = run_span_annotations
    assert (verification["name"], verification["annotator_kind"], verification["identifier"]) == (
        "agentledger.verification", "CODE", "agentledger.verify",
    )  # fmt: skip
    # One chain link per stored batch: how the spool grouped the seven requests varies.
    assert verification["result"] == {
        "label": "intact", "score": 1.0, "explanation": f"7 spans recompute against {links} chain links",
    }  # fmt: skip
    assert (verification["metadata"]["run_id"], verification["metadata"]["links"]) == (run_id, links)
    # Each annotation links back to the run's page in agentledger, not to its JSON.
    page = run_page_url(service.api_url, run_id)
    assert (verification["metadata"]["agentledger_url"], pushed_finding["metadata"]["agentledger_url"]) == (page, page)


def test_the_background_sync_of_up_pulls_annotations_without_being_asked(
    phoenix: RunningPhoenix, tmp_path: Path
) -> None:
    project = "background-sync-test"
    run_id = "run_phoenix_sync_0002"
    config = phoenix_config(tmp_path, phoenix.url, project, extra="    sync: {interval_s: 1}")
    service = start_service(tmp_path / "data", "--config", str(config))
    try:
        send_reviewed_run(service.collector_url, run_id)
        timeline = wait_for_timeline(service.api_url, run_id, 7)
        wait_for_phoenix_spans(phoenix.url, project, timeline["entries"][0]["trace_id"], 7)
        write_span = next(entry["span_id"] for entry in timeline["entries"] if entry["name"] == "write stripe")
        annotate(phoenix.url, write_span, "risk", "HUMAN", "needs_review", 0.2, "amount unusual for customer")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            timeline = httpx.get(f"{service.api_url}/v1/runs/{run_id}/timeline", timeout=10).json()
            if entry_annotations(timeline, "write stripe"):
                break
            time.sleep(0.5)
    finally:
        service.stop()
    assert entry_annotations(timeline, "write stripe") == [
        {"name": "risk", "label": "needs_review", "score": 0.2, "explanation": "amount unusual for customer",
         "annotator_kind": "HUMAN", "annotator": "phoenix api", "source": "phoenix"},
    ]  # fmt: skip


def test_tampering_findings_become_failing_code_annotations_on_their_spans() -> None:
    verification = Verification(
        run_id="run_x", status="tampered", links=2, spans_checked=5, head="ab", head_signature="",
        signatures_checked=False, first_bad_link=1, chain_breaks=[ChainBreak(seq=1, problem="hash mismatch")],
        findings=[SpanFinding(trace_id="t1", span_id="s2", name="execute_tool x", problem="altered", link_seq=1)],
    )  # fmt: skip

    assert findings_annotations(verification, "s1") == [
        {"span_id": "s1", "name": "agentledger.verification", "annotator_kind": "CODE",
         "identifier": "agentledger.verify",
         "result": {"label": "tampered", "score": 0.0,
                    "explanation": "1 span(s) altered, removed or inserted out of band; 1 chain break(s);"
                                   " untrustworthy from link 1"},
         "metadata": {"run_id": "run_x", "links": 2, "spans_checked": 5, "head": "ab", "first_bad_link": 1}},
        {"span_id": "s2", "name": "agentledger.integrity", "annotator_kind": "CODE",
         "identifier": "agentledger.verify",
         "result": {"label": "altered", "score": 0.0, "explanation": "span altered (chained in link 1)"},
         "metadata": {"run_id": "run_x", "trace_id": "t1"}},
    ]  # fmt: skip
