"""Run ids are any UTF-8 text up to 1024 bytes (schema/run_ids.py) on every endpoint taking one: paths
with `/`, dots, spaces, NUL and line breaks, percent signs, non-Latin text; evidence file names that
are safe headers; one clear 4xx for a longer id, and the collector refusing spans carrying one."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Final
from urllib.parse import unquote

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentledger.collector.config import HttpProtocolConfig
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.query_api.webhooks import run_id_in_text
from agentledger.schema.run_ids import evidence_file_name, run_id_path_segment
from tests.conftest import direct_pipeline, otlp_ingest
from tests.query_api.incidents import PrRun, github_pull_request, ingest, pr_run_spans, span_id_of

HOSTILE_IDS: Final = [
    "a/b",
    "../x",
    "..",
    ".",
    "x/timeline",
    "what?q=1#frag",
    "ü-运行",
    "with space",
    "%2F",
    "nul\x00id",
    "line\nbreak",
    "trailing newline\n",
    "emoji 🧾",
    "tab\tand\rcr",
    "\x1b[31mred",
    'quote"back\\slash;semi',
    "a" * 1024,
    "运" * 341 + "x",  # 1024 bytes of UTF-8
]
TOO_LONG: Final = ["a" * 1025, "运" * 342]
# What a Content-Disposition header may hold: printable ASCII only (no control character, nothing a
# Latin-1 encoder or an HTTP/1.1 parser could refuse).
_SAFE_HEADER: Final = re.compile(r"[ -~]*")


def _name(run_id: str) -> str:
    return repr(run_id) if len(run_id) <= 40 else f"{len(run_id.encode())} bytes"


def _url(run_id: str, suffix: str = "") -> str:
    return f"/v1/runs/{run_id_path_segment(run_id)}{suffix}"


def _writes(run_id: str) -> dict[str, object]:
    write = {"run_id": run_id, "system": "stripe", "ref": "re_1", "action": "create", "target": "stripe:customer/C-1"}
    return {"writes": [{**write, "occurred_at": "2026-11-20T10:01:03Z"}]}


@pytest.mark.parametrize("run_id", HOSTILE_IDS, ids=_name)
def test_every_run_endpoint_serves_any_run_id(client: Client, served_api: httpx.Client, run_id: str) -> None:
    spans = pr_run_spans(PrRun(run_id))
    ingest(client, spans)
    call = span_id_of(spans, "execute_tool create_pull_request")

    timeline = served_api.get(_url(run_id, "/timeline"))
    report = served_api.get(_url(run_id, "/timeline"), params={"format": "md"})
    audit = served_api.get(_url(run_id, "/audit"))
    annotated = served_api.post(_url(run_id, "/annotations"), json={"span_id": call, "name": "root_cause"})
    annotations = served_api.get(_url(run_id, "/annotations"))
    verified = served_api.get(_url(run_id, "/verify"))
    listed = [r["run_id"] for r in served_api.get("/v1/runs").json()["runs"]]
    wrote = served_api.post("/v1/writes", json=_writes(run_id))

    assert (timeline.status_code, timeline.json()["run"]["run_id"]) == (200, run_id)
    assert len(timeline.json()["entries"]) == len(spans)
    assert report.status_code == 200
    assert audit.status_code == 200
    assert annotated.status_code == 201
    assert [a["span_id"] for a in annotations.json()] == [call]
    assert (verified.status_code, verified.json()["run_id"], verified.json()["status"]) == (200, run_id, "intact")
    assert listed == [run_id]
    assert wrote.status_code == 202
    assert [w["write"]["ref"] for w in served_api.get(_url(run_id, "/timeline")).json()["writes"]] == ["re_1"]


@pytest.mark.parametrize("run_id", HOSTILE_IDS, ids=_name)
def test_evidence_file_names_are_safe_headers(client: Client, served_api: httpx.Client, run_id: str) -> None:
    ingest(client, pr_run_spans(PrRun(run_id)))

    response = served_api.get(_url(run_id, "/evidence"))

    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert _SAFE_HEADER.fullmatch(disposition), disposition
    fallback = re.fullmatch(r'attachment; filename="([^"\\]*)"; filename\*=UTF-8\'\'(\S+)', disposition)
    assert fallback is not None, disposition
    assert fallback.group(1) == evidence_file_name(run_id, ascii_only=True)
    assert unquote(fallback.group(2), errors="strict") == evidence_file_name(run_id)
    assert zipfile.ZipFile(io.BytesIO(response.content)).testzip() is None


def test_evidence_file_names_never_collide_nor_escape_the_folder() -> None:
    names = [evidence_file_name(run_id) for run_id in [*HOSTILE_IDS, "a_b", "a:b", "a\\b"]]
    ascii_names = [evidence_file_name(run_id, ascii_only=True) for run_id in [*HOSTILE_IDS, "a_b", "a:b", "a\\b"]]

    assert len(set(names)) == len(names)
    assert len(set(ascii_names)) == len(ascii_names)
    for name in names + ascii_names:
        assert name.startswith("agentledger-evidence-") and name.endswith(".zip")
        assert not set(name) & set('/\\:*?"<>|'), name
        assert all(ch.isprintable() for ch in name), name
        assert len(name.encode()) <= 200
    assert evidence_file_name("run_pr_1") == "agentledger-evidence-run_pr_1.zip"  # plain ids stay readable
    assert evidence_file_name("ü-运行") == "agentledger-evidence-ü-运行.zip"


@pytest.mark.parametrize("run_id", ["a/b", "line\nbreak", "a" * 1024], ids=_name)
def test_deletion_and_holds_take_any_run_id(client: Client, served_api: httpx.Client, run_id: str) -> None:
    ingest(client, pr_run_spans(PrRun(run_id)))
    hold = served_api.post("/v1/holds", json={"scope": "run", "target": run_id, "reason": "matter 1"})
    assert hold.status_code == 201

    refused = served_api.delete(_url(run_id), params={"reason": "cleanup"})
    released = served_api.post(f"/v1/holds/{hold.json()['hold_id']}/release")
    deleted = served_api.delete(_url(run_id), params={"reason": "cleanup"})

    assert refused.status_code == 409
    assert released.status_code == 200
    assert (deleted.status_code, deleted.json()["run_id"]) == (200, run_id)
    assert served_api.get(_url(run_id, "/timeline")).status_code == 404
    assert served_api.get(_url(run_id, "/verify")).json()["status"] == "pruned"


def test_the_runs_listing_pages_through_the_longest_run_ids(client: Client, served_api: httpx.Client) -> None:
    longest = ["运" * 341 + "a", "运" * 341 + "b", "运" * 341 + "c"]
    for run_id in longest:
        ingest(client, pr_run_spans(PrRun(run_id)))

    seen: list[str] = []
    cursor = None
    while True:
        page = served_api.get("/v1/runs", params={"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [r["run_id"] for r in page.json()["runs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(longest, reverse=True)


@pytest.mark.parametrize("run_id", TOO_LONG, ids=_name)
def test_a_run_id_over_1024_bytes_is_a_clear_422_everywhere(served_api: httpx.Client, run_id: str) -> None:
    responses = [
        served_api.get(_url(run_id, "/timeline")),
        served_api.get(_url(run_id, "/audit")),
        served_api.get(_url(run_id, "/annotations")),
        served_api.post(_url(run_id, "/annotations"), json={"span_id": "00", "name": "x"}),
        served_api.get(_url(run_id, "/verify")),
        served_api.get(_url(run_id, "/evidence")),
        served_api.delete(_url(run_id), params={"reason": "x"}),
        served_api.post("/v1/holds", json={"scope": "run", "target": run_id, "reason": "x"}),
        served_api.post("/v1/writes", json=_writes(run_id)),
    ]

    assert [r.status_code for r in responses] == [422] * len(responses)
    for response in responses:
        assert f"the run id is {len(run_id.encode())} bytes of UTF-8; at most 1024 are allowed" in response.text


def test_the_collector_answers_an_over_long_run_id_with_partial_success_and_counts_it(client: Client) -> None:
    telemetry = CollectorTelemetry()
    http = TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(direct_pipeline(client), telemetry)))
    spans = pr_run_spans(PrRun("a" * 1025)) + pr_run_spans(PrRun("a" * 1024))

    response = http.post(
        "/v1/traces",
        content=encode_spans(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )

    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert response.status_code == 200
    half = len(spans) // 2
    assert (partial.rejected_spans, partial.error_message) == (
        half,
        f"{half} span(s) rejected: agent.run.id is longer than 1024 bytes",
    )
    assert telemetry.value("agentledger_spans_rejected_total", ("reason", "invalid_or_over_limit")) == half
    assert client.query("SELECT DISTINCT run_id FROM spans").result_rows == [("a" * 1024,)]


def test_the_collector_rejects_spans_with_a_run_id_over_1024_bytes_and_keeps_1024_whole() -> None:
    spans = pr_run_spans(PrRun("运" * 342)) + pr_run_spans(PrRun("运" * 341 + "x"))

    decoded = decode_request(encode_spans(spans), Identity("default"))

    assert decoded.rejected_spans == len(spans) // 2
    assert decoded.rejection_message == f"{len(spans) // 2} span(s) rejected: agent.run.id is longer than 1024 bytes"
    assert set(decoded.batch.column("run_id").to_pylist()) == {"运" * 341 + "x"}


@pytest.mark.parametrize("run_id", ["with space", "ü-运行", "nul\x00id", "a/b", "a" * 1024], ids=_name)
def test_webhooks_carry_any_run_id_on_one_line(client: Client, served_api: httpx.Client, run_id: str) -> None:
    ingest(client, pr_run_spans(PrRun(run_id)))

    delivered = served_api.post(
        "/v1/hooks/github", json=github_pull_request(run_id), headers={"X-GitHub-Event": "pull_request"}
    )

    assert delivered.status_code == 202, delivered.text
    assert [w["write"]["system"] for w in served_api.get(_url(run_id, "/timeline")).json()["writes"]] == ["github"]


def test_a_trailer_too_long_for_a_run_id_is_ignored() -> None:
    assert run_id_in_text("Fix\n\nAgent-Run-Id: " + "a" * 1025 + "\n") == ""
    assert run_id_in_text("Fix\n\nAgent-Run-Id:  with space  \r\n") == "with space"
