"""Keeps Arize Phoenix and the audit record in agreement: reviewers' span annotations in Phoenix are pulled
into the annotations table, and our verification results are pushed to Phoenix as CODE annotations.

Phoenix's REST API lists annotations by span id only, so each sync looks at the spans of a time window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, Field

from agentledger.query_api import queries
from agentledger.query_api.audit_config import AuditConfig
from agentledger.query_api.findings import load_audit
from agentledger.query_api.models import Audit, Verification
from agentledger.query_api.read_pool import InlineReads
from agentledger.query_api.verify import verify_run
from agentledger.schema.run_ids import run_page_url

logger = logging.getLogger(__name__)

SOURCE: Final = "phoenix"
# Annotations we push carry this identifier: Phoenix upserts by (span, name, identifier), so a re-push
# updates rather than duplicates, and the pull leaves our own annotations out.
PUSH_IDENTIFIER: Final = "agentledger.verify"
VERIFICATION_NAME: Final = "agentledger.verification"
INTEGRITY_NAME: Final = "agentledger.integrity"
AUDIT_NAME: Final = "agentledger.audit"
_SPAN_IDS_PER_REQUEST: Final = 100
_PAGE_LIMIT: Final = 1000
# Verification statuses that mean the record can be trusted (pruned: only retention or recorded deletions).
_TRUSTED: Final = frozenset({"intact", "pruned"})
_TAMPERING: Final = frozenset({"altered", "removed", "inserted"})


class PhoenixUnavailable(RuntimeError):
    """Phoenix could not be reached or refused a request; the message says which and why."""


@dataclass(frozen=True)
class PhoenixConnection:
    """Where Phoenix is, for the sync and for timeline links (built from the phoenix exporter's config)."""

    endpoint: str
    project: str
    ui_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    lookback_hours: float = 168.0
    # The query API's base URL: each annotation pushed to Phoenix links back to the run's page there.
    page_base_url: str = ""

    def span_url(self, span_id: str) -> str:
        # Phoenix's UI resolves a span id to its project and trace itself (span ids are unique across projects).
        return f"{self.ui_url}/redirects/spans/{span_id}"


class SyncReport(BaseModel):
    pulled: int = Field(description="Phoenix annotations stored now (new, or changed since the last sync).")
    unchanged: int = Field(description="Phoenix annotations already stored in the same version.")
    runs_verified: int = Field(description="Runs in the window whose verification was computed.")
    pushed: int = Field(description="Annotations with our findings written to Phoenix now.")
    push_failures: int = Field(description="Runs whose findings Phoenix refused (e.g. spans it has not stored yet).")


class PhoenixRestClient:
    """The few Phoenix REST endpoints the sync uses, with errors as PhoenixUnavailable."""

    def __init__(self, connection: PhoenixConnection) -> None:
        self._connection = connection
        self._http = httpx.Client(
            base_url=connection.endpoint, timeout=connection.timeout_s, headers=dict(connection.headers)
        )

    def close(self) -> None:
        self._http.close()

    def span_annotations(self, span_ids: Sequence[str]) -> list[dict[str, Any]]:
        annotations: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"span_ids": list(span_ids), "limit": _PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            body = self._request("GET", f"/v1/projects/{self._connection.project}/span_annotations", params=params)
            if body is None:  # the project does not exist yet: nothing was exported to it
                return annotations
            annotations.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return annotations

    def upsert_span_annotations(self, annotations: Sequence[Mapping[str, Any]]) -> None:
        self._request("POST", "/v1/span_annotations", params={"sync": "true"}, json={"data": list(annotations)})

    def _request(self, method: str, path: str, params: Mapping[str, Any], json: Any = None) -> dict[str, Any] | None:
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.HTTPError as error:
            raise PhoenixUnavailable(f"Phoenix at {self._connection.endpoint} is unreachable: {error}") from error
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code != 200:
            raise PhoenixUnavailable(
                f"Phoenix answered {response.status_code} to {method} {path}: {response.text[:200]}"
            )
        body: dict[str, Any] = response.json()
        return body


class PhoenixSync:
    """One sync at a time per process (the background task and `POST /v1/phoenix/sync` share it)."""

    def __init__(
        self, client: Client, tenant: str, connection: PhoenixConnection, audit_config: AuditConfig | None = None
    ) -> None:
        self._client = client
        self._audit_config = audit_config
        self._tenant = tenant
        self.tenant = tenant
        self.connection = connection
        self._lock = threading.Lock()
        # What was last pushed per run, so an unchanged verification is not written again every interval.
        self._pushed: dict[str, str] = {}

    def run_once(self, now_ns: int | None = None) -> SyncReport:
        now_ns = time.time_ns() if now_ns is None else now_ns
        from_ns = now_ns - int(self.connection.lookback_hours * 3600 * 1e9)
        with self._lock:
            rest = PhoenixRestClient(self.connection)
            try:
                pulled, unchanged = self._pull(rest, from_ns)
                verified, pushed, failures = self._push(rest, from_ns)
            finally:
                rest.close()
        report = SyncReport(
            pulled=pulled, unchanged=unchanged, runs_verified=verified, pushed=pushed, push_failures=failures
        )
        logger.info("phoenix sync: %s", report.model_dump())
        return report

    # --- pull: Phoenix -> annotations table -------------------------------------------------------------

    def _pull(self, rest: PhoenixRestClient, from_ns: int) -> tuple[int, int]:
        spans = {
            row["span_id"]: (row["run_id"], row["trace_id"])
            for row in self._client.query(
                queries.PHOENIX_SYNC_SPANS, parameters={"tenant": self._tenant, "from_ns": from_ns}
            ).named_results()
        }
        found: list[dict[str, Any]] = []
        span_ids = sorted(spans)
        for start in range(0, len(span_ids), _SPAN_IDS_PER_REQUEST):
            found.extend(rest.span_annotations(span_ids[start : start + _SPAN_IDS_PER_REQUEST]))
        reviews = [a for a in found if not str(a.get("identifier") or "").startswith(PUSH_IDENTIFIER)]
        if not reviews:
            return 0, 0
        stored = {
            row["annotation_id"]: int(row["updated_us"])
            for row in self._client.query(
                queries.PHOENIX_KNOWN_ANNOTATIONS,
                parameters={"tenant": self._tenant, "ids": [_annotation_id(a) for a in reviews]},
            ).named_results()
        }
        rows = []
        for annotation in reviews:
            updated = _timestamp(annotation["updated_at"])
            if stored.get(_annotation_id(annotation)) == _micros(updated):
                continue
            run_id, trace_id = spans[annotation["span_id"]]
            rows.append(_annotation_row(self._tenant, run_id, trace_id, annotation, updated))
        if rows:
            self._client.insert("annotations", rows, column_names=list(ANNOTATION_COLUMNS))
        return len(rows), len(reviews) - len(rows)

    # --- push: verification results -> Phoenix CODE annotations ------------------------------------------

    def _push(self, rest: PhoenixRestClient, from_ns: int) -> tuple[int, int, int]:
        run_ids = [
            row["run_id"]
            for row in self._client.query(
                queries.PHOENIX_SYNC_RUNS, parameters={"tenant": self._tenant, "from_ns": from_ns}
            ).named_results()
        ]
        pushed = failures = 0
        for run_id in run_ids:
            verification = verify_run(self._client, self._tenant, run_id)
            anchor = list(
                self._client.query(
                    queries.PHOENIX_RUN_ANCHOR_SPAN, parameters={"tenant": self._tenant, "run_id": run_id}
                ).named_results()
            )
            if verification is None or not anchor:
                continue
            annotations = findings_annotations(verification, anchor[0]["span_id"])
            audited = load_audit(InlineReads(self._client), self._tenant, run_id, self._audit_config)
            if audited is not None:
                annotations += audit_annotations(audited[2], anchor[0]["span_id"])
            if self.connection.page_base_url:
                for annotation in annotations:
                    annotation["metadata"]["agentledger_url"] = run_page_url(self.connection.page_base_url, run_id)
            fingerprint = repr(annotations)
            if self._pushed.get(run_id) == fingerprint:
                continue
            try:
                rest.upsert_span_annotations(annotations)
            except PhoenixUnavailable as error:
                # Typically spans Phoenix has not stored yet (its ingestion lags): the next sync retries.
                logger.warning("phoenix sync: findings of run %s not pushed: %s", run_id, error)
                failures += 1
                continue
            self._pushed[run_id] = fingerprint
            pushed += len(annotations)
        return len(run_ids), pushed, failures


def audit_annotations(audit: Audit, anchor_span_id: str) -> list[dict[str, Any]]:
    """Each audit finding (write without approval, untrusted influence, ...) as a CODE annotation on the tool
    call it concerns, or on the run span for a write no tool call accounts for."""
    return [
        {
            "span_id": finding.span_id or anchor_span_id,
            "name": AUDIT_NAME,
            "annotator_kind": "CODE",
            # One annotation per rule and span: Phoenix upserts by (span, name, identifier).
            "identifier": f"{PUSH_IDENTIFIER}.audit.{finding.rule}",
            "result": {"label": finding.rule, "score": 0.0, "explanation": finding.message},
            "metadata": {"run_id": audit.run_id, "rule": finding.rule, "rule_version": finding.rule_version,
                         "severity": finding.severity, "evidence": finding.evidence, "inferred": finding.inferred,
                         "write_ref": finding.write_ref},
        }
        for finding in audit.findings
    ]


def findings_annotations(verification: Verification, anchor_span_id: str) -> list[dict[str, Any]]:
    """The run's verification status on its run span, and each span finding on its span, as CODE annotations."""
    trusted = verification.status in _TRUSTED
    if verification.status == "unchained":
        explanation = "spans exist but no audit chain: ingested with audit_chain off"
    elif trusted:
        explanation = f"{verification.spans_checked} spans recompute against {verification.links} chain links" + (
            f"; {len(verification.findings)} pruned or deleted on record" if verification.findings else ""
        )
    else:
        explanation = (
            f"{sum(f.problem in _TAMPERING for f in verification.findings)} span(s) altered, removed or inserted"
            f" out of band; {len(verification.chain_breaks)} chain break(s); untrustworthy from link"
            f" {verification.first_bad_link}"
        )
    annotations: list[dict[str, Any]] = [
        {
            "span_id": anchor_span_id,
            "name": VERIFICATION_NAME,
            "annotator_kind": "CODE",
            "identifier": PUSH_IDENTIFIER,
            "result": {
                "label": verification.status,
                "score": None if verification.status == "unchained" else (1.0 if trusted else 0.0),
                "explanation": explanation,
            },
            "metadata": {
                "run_id": verification.run_id,
                "links": verification.links,
                "spans_checked": verification.spans_checked,
                "head": verification.head,
                "first_bad_link": verification.first_bad_link,
            },
        }
    ]
    for finding in verification.findings:
        since = f" (chained in link {finding.link_seq})" if finding.link_seq is not None else ""
        annotations.append(
            {
                "span_id": finding.span_id,
                "name": INTEGRITY_NAME,
                "annotator_kind": "CODE",
                "identifier": PUSH_IDENTIFIER,
                "result": {
                    "label": finding.problem,
                    "score": 0.0 if finding.problem in _TAMPERING else None,
                    "explanation": f"span {finding.problem}{since}" + (f": {finding.note}" if finding.note else ""),
                },
                "metadata": {"run_id": verification.run_id, "trace_id": finding.trace_id},
            }
        )
    return annotations


ANNOTATION_COLUMNS: Final = (
    "tenant", "run_id", "trace_id", "span_id", "annotation_id", "name", "label", "score", "explanation",
    "annotator_kind", "annotator", "source", "created_at", "updated_at",
)  # fmt: skip


def _annotation_id(annotation: Mapping[str, Any]) -> str:
    return f"{SOURCE}:{annotation['id']}"


def _annotation_row(
    tenant: str, run_id: str, trace_id: str, annotation: Mapping[str, Any], updated: datetime
) -> list[object]:
    result = annotation.get("result") or {}
    score = result.get("score")
    # Phoenix names the user for annotations made in its UI with authentication on; else where it came from.
    annotator = annotation.get("user_id") or f"phoenix {str(annotation.get('source', '')).lower()}".strip()
    return [
        tenant, run_id, trace_id, annotation["span_id"], _annotation_id(annotation), annotation["name"],
        result.get("label") or "", float(score) if score is not None else None, result.get("explanation") or "",
        annotation["annotator_kind"], annotator, SOURCE, _timestamp(annotation["created_at"]), updated,
    ]  # fmt: skip


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _micros(value: datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def run_periodically(sync: PhoenixSync, interval_s: float, stop: threading.Event) -> None:
    """The background task of `agentledger up`: a failed sync is logged and retried at the next interval."""
    while not stop.wait(interval_s):
        try:
            sync.run_once()
        except PhoenixUnavailable as error:
            logger.warning("phoenix sync failed (retrying in %.0f s): %s", interval_s, error)
        except Exception:  # a bug or a storage error must not end the task silently
            logger.exception("phoenix sync failed (retrying in %.0f s)", interval_s)
