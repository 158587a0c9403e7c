"""Agent runs: the listing, one run's incident timeline (JSON or Markdown), its audit and annotations."""

from __future__ import annotations

import base64
import binascii
import uuid
from time import time_ns
from typing import Annotated, Any, Final

from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from agentledger.query_api.auth import AUTH_RESPONSES, Admin, Reader, Reviewer, error
from agentledger.query_api.dependencies import (
    ChainWriterDep,
    ClientDep,
    ConfigDep,
    PhoenixSyncDep,
    QueryApiConfig,
    ReadsDep,
)
from agentledger.query_api.downloads import attachment
from agentledger.query_api.evidence import build_bundle
from agentledger.query_api.findings import audit_runs, load_audit, matches, max_severity
from agentledger.query_api.holds import HoldActive, delete_run
from agentledger.query_api.models import (
    AnnotationIn,
    AnnotationOut,
    Audit,
    Deletion,
    RunListItem,
    RunPage,
    Timeline,
    Verification,
)
from agentledger.query_api.paths import RunId
from agentledger.query_api.report import timeline_markdown
from agentledger.query_api.store import runs as run_store
from agentledger.query_api.timeline import load_timeline
from agentledger.query_api.times import TimeFormatError, parse_rfc3339_ns, rfc3339_nanos
from agentledger.query_api.totals import with_totals
from agentledger.query_api.verify import verify_run
from agentledger.schema.run_ids import evidence_file_name, run_page_url

router = APIRouter(prefix="/v1/runs", tags=["runs"])

_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: error("No run with this id for the caller's tenant.")}
_MAX_INT64: Final = 2**63 - 1
# With has_violations, at most this many runs are audited for one page; the cursor resumes after them.
MAX_AUDITED_PER_PAGE: Final = 500


def _not_found(run_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no run with id {run_id!r}")


def _encode_cursor(first_start_ns: int, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{first_start_ns}:{run_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ns, _, run_id = text.partition(":")
        value = int(ns)
        if not 0 <= value <= _MAX_INT64:
            raise ValueError
        return value, run_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(status_code=400, detail="cursor is not one this API returned") from None


def _time_bound(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_rfc3339_ns(value)
    except TimeFormatError as problem:
        raise HTTPException(status_code=400, detail=f"{name}: {problem}") from None


@router.get(
    "",
    responses={
        **AUTH_RESPONSES,
        400: error("A time bound or the cursor is invalid."),
    },
)
def list_runs(
    caller: Reader,
    client: ClientDep,
    reads: ReadsDep,
    config: ConfigDep,
    agent: Annotated[str, Query(max_length=256, description="gen_ai.agent.id or gen_ai.agent.name.")] = "",
    outcome: Annotated[str, Query(max_length=64, description="success, failure, escalated, cancelled.")] = "",
    tool: Annotated[str, Query(max_length=256, description="Runs that called this tool.")] = "",
    workflow: Annotated[str, Query(max_length=256, description="Runs of this gen_ai.workflow.name.")] = "",
    target: Annotated[
        str, Query(max_length=2048, description="Runs that touched this target (a span or a write names it).")
    ] = "",
    with_findings: Annotated[
        bool, Query(description="Also count each listed run's findings and give the top severity.")
    ] = False,
    autonomy_level: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str | None, Query(max_length=64, description="RFC 3339; runs that started at or after.")] = None,
    until: Annotated[str | None, Query(max_length=64, description="RFC 3339; runs that started at or before.")] = None,
    has_violations: Annotated[
        bool | None, Query(description="Only runs with (true) or without (false) audit findings.")
    ] = None,
    rule: Annotated[str, Query(max_length=256, description="Only runs with a finding of this rule id.")] = "",
    severity: Annotated[
        str,
        Query(
            pattern="^(|info|low|medium|high|critical)$", description="Only runs with a finding at least this severe."
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,  # base64 of a time and a run id
) -> RunPage:
    """The caller's tenant's runs, newest first, filtered; paginated by an opaque cursor. With a finding
    filter (has_violations, rule, severity) each page's candidate runs are audited together, in a fixed
    number of reads per batch of up to 500 runs."""
    cursor_ns, cursor_run = _decode_cursor(cursor) if cursor else (_MAX_INT64, "")
    parameters = {
        "tenant": caller.tenant,
        "agent": agent,
        "outcome": outcome,
        "tool": tool,
        "workflow": workflow,
        "target": target,
        "autonomy_level": autonomy_level,
        "from_ns": _time_bound("since", since, 0),
        "to_ns": _time_bound("until", until, _MAX_INT64),
    }
    audited = has_violations is not None or bool(rule) or bool(severity)
    counted = audited or with_findings  # findings counted for the page (the runs page asks for them)
    page: list[RunListItem] = []
    examined = 0
    more = True
    while more and len(page) < limit and examined < MAX_AUDITED_PER_PAGE:
        batch = limit + 1 if not audited else MAX_AUDITED_PER_PAGE - examined
        rows = run_store.list_runs(
            client, {**parameters, "cursor_ns": cursor_ns, "cursor_run": cursor_run, "limit": batch}
        )
        more = len(rows) == batch
        audits = (
            {run_id: item[2] for run_id, item in
             audit_runs(reads, caller.tenant, [str(row["run_id"]) for row in rows], config.audit).items()}
            if counted else {}
        )  # fmt: skip
        for row in rows:
            if len(page) == limit:
                more = True
                break
            examined += 1
            cursor_ns, cursor_run = int(row["first_start_ns"]), str(row["run_id"])
            audit = audits.get(cursor_run)
            if audited and (audit is None or not matches(audit, has_violations, rule, severity)):
                continue
            page.append(
                RunListItem(
                    run_id=cursor_run,
                    agent_id=row["agent_id"],
                    agent_name=row["agent_name"],
                    outcome=row["outcome"],
                    autonomy_level=row["autonomy_level"],
                    tools=sorted(row["tools"]),
                    first_start=rfc3339_nanos(cursor_ns),
                    last_end=rfc3339_nanos(int(row["last_end_ns"])),
                    span_count=int(row["span_count"]),
                    error_count=int(row["error_count"]),
                    write_tool_calls=int(row["write_tool_calls"]),
                    findings=len(audit.findings) if audit is not None else None,
                    finding_rules=sorted({f.rule for f in audit.findings}) if audit is not None else None,
                    max_severity=max_severity(audit) if audit is not None else None,
                    top_severity=max_severity(audit) if audit is not None else None,
                    duration_ms=(int(row["last_end_ns"]) - cursor_ns) / 1e6,
                )
            )
    next_cursor = _encode_cursor(cursor_ns, cursor_run) if more else None
    return RunPage(runs=_with_usage(client, caller.tenant, page, config), next_cursor=next_cursor)


def _with_usage(client: Client, tenant: str, page: list[RunListItem], config: QueryApiConfig) -> list[RunListItem]:
    """The listed runs with their workflow, tokens, cost and downstream writes (one query per page)."""
    if not page:
        return page
    usage, writes = run_store.list_usage(client, tenant, [item.run_id for item in page], config.metrics.price_arrays())
    listed = []
    for item in page:
        row = usage.get(item.run_id)
        update: dict[str, Any] = {"writes": writes.get(item.run_id, 0)}
        if row is not None:
            update |= {
                "workflow": row["workflow"],
                "input_tokens": int(row["used_input_tokens"]),
                "output_tokens": int(row["used_output_tokens"]),
                "cost_usd": float(row["cost"]),
            }
        listed.append(item.model_copy(update=update))
    return listed


@router.get(
    "/{run_id:text}/timeline",
    response_model=Timeline,
    responses={
        **AUTH_RESPONSES,
        **_NOT_FOUND,
        200: {
            "description": "The timeline as JSON, or as a Markdown incident report with `format=md`.",
            "content": {"text/markdown": {"schema": {"type": "string"}}},
        },
    },
)
def get_timeline(
    request: Request,
    run_id: RunId,
    caller: Reader,
    client: ClientDep,
    reads: ReadsDep,
    config: ConfigDep,
    phoenix: PhoenixSyncDep,
    format: Annotated[str, Query(pattern="^(json|md)$", description="json (default) or md.")] = "json",
    verify: Annotated[bool, Query(description="Also check the run against its audit hash chain.")] = False,
) -> Timeline | Response:
    """Every span of the run across its traces and every downstream write, in time order, with the audit
    (and, with `verify=true`, the integrity of the stored record); reviewers' annotations and, when Phoenix
    is configured, a link to each span there."""
    span_url = phoenix.connection.span_url if phoenix is not None else None
    timeline = load_timeline(reads, caller.tenant, run_id, span_url, config.audit)
    if timeline is None:
        raise _not_found(run_id)
    timeline = with_totals(timeline, config.metrics)
    if verify or format == "md":  # an incident report always states whether the record can be trusted
        integrity = verify_run(client, caller.tenant, run_id, public_key_pem=config.audit_public_key_pem,
                               checkpoint_dir=config.checkpoint_dir)  # fmt: skip
        timeline = timeline.model_copy(update={"integrity": integrity})
    if format == "md":
        page = run_page_url(str(request.base_url), run_id)
        return PlainTextResponse(timeline_markdown(timeline, page), media_type="text/markdown; charset=utf-8")
    return timeline


@router.get("/{run_id:text}/audit", responses={**AUTH_RESPONSES, **_NOT_FOUND})
def get_audit(run_id: RunId, caller: Reader, reads: ReadsDep, config: ConfigDep) -> Audit:
    """The run's audit: each finding with its rule, severity, evidence spans and sentence; the rules that
    ran; and per tool call the policy decisions and approvals that apply to it."""
    audited = load_audit(reads, caller.tenant, run_id, config.audit)
    if audited is None:
        raise _not_found(run_id)
    return audited[2]


@router.get("/{run_id:text}/annotations", responses={**AUTH_RESPONSES})
def list_annotations(run_id: RunId, caller: Reader, client: ClientDep) -> list[AnnotationOut]:
    """Reviewers' annotations of the run's spans, newest first."""
    rows = run_store.run_annotations(client, caller.tenant, run_id)
    return [
        AnnotationOut(
            annotation_id=row["annotation_id"],
            span_id=row["span_id"],
            trace_id=row["trace_id"],
            name=row["name"],
            label=row["label"],
            score=row["score"],
            explanation=row["explanation"],
            annotator=row["annotator"],
            created_at=rfc3339_nanos(int(row["created_ns"])),
        )
        for row in rows
    ]


@router.post(
    "/{run_id:text}/annotations",
    status_code=201,
    responses={**AUTH_RESPONSES, 404: error("The run has no span with this id for the caller's tenant.")},
)
def annotate(run_id: RunId, body: AnnotationIn, caller: Reviewer, client: ClientDep) -> AnnotationOut:
    """Annotates one span of the run (reviewer or admin)."""
    trace_id = run_store.run_span_trace(client, caller.tenant, run_id, body.span_id)
    if trace_id is None:
        raise HTTPException(status_code=404, detail=f"run {run_id!r} has no span {body.span_id!r}")
    annotation_id = uuid.uuid4().hex
    now_ns = time_ns()
    client.insert(
        "annotations",
        [[caller.tenant, run_id, trace_id, body.span_id, annotation_id, body.name, body.label, body.score,
          body.explanation, "HUMAN", caller.key_id, "api", now_ns, now_ns]],
        column_names=["tenant", "run_id", "trace_id", "span_id", "annotation_id", "name", "label", "score",
                      "explanation", "annotator_kind", "annotator", "source", "created_at", "updated_at"],
    )  # fmt: skip
    return AnnotationOut(
        annotation_id=annotation_id,
        span_id=body.span_id,
        trace_id=trace_id,
        name=body.name,
        label=body.label,
        score=body.score,
        explanation=body.explanation,
        annotator=caller.key_id,
        created_at=rfc3339_nanos(now_ns),
    )


@router.get("/{run_id:text}/verify", responses={**AUTH_RESPONSES, **_NOT_FOUND})
def verify(run_id: RunId, caller: Reader, client: ClientDep, config: ConfigDep) -> Verification:
    """Recomputes the run's audit record from the spans its timeline shows: intact, or which spans were
    altered, removed, inserted out of band or re-sent with other content, which links were altered,
    replayed, reordered or cut off, and whether each link's log matches its signed checkpoints. A run the
    index lists whose record is gone is tampered, not unknown."""
    result = verify_run(client, caller.tenant, run_id, public_key_pem=config.audit_public_key_pem,
                        checkpoint_dir=config.checkpoint_dir)  # fmt: skip
    if result is None:
        raise _not_found(run_id)
    return result


@router.get(
    "/{run_id:text}/evidence",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The evidence bundle (zip)."},
        **AUTH_RESPONSES,
        **_NOT_FOUND,
    },
)
def evidence(run_id: RunId, caller: Reader, client: ClientDep, config: ConfigDep) -> Response:
    """One self-contained file for an auditor: spans, chain, timeline and verification, with a README on
    checking it offline (schema/AUDIT_CHAIN.md)."""
    bundle = build_bundle(client, caller.tenant, run_id, config.audit_public_key_pem, config.checkpoint_dir)
    if bundle is None:
        raise _not_found(run_id)
    disposition = attachment(evidence_file_name(run_id), evidence_file_name(run_id, ascii_only=True))
    return Response(bundle, media_type="application/zip", headers={"Content-Disposition": disposition})


@router.delete(
    "/{run_id:text}",
    responses={**AUTH_RESPONSES, **_NOT_FOUND, 409: error("A legal hold covers the run.")},
)
def delete(
    run_id: RunId,
    caller: Admin,
    client: ClientDep,
    config: ConfigDep,
    chain: ChainWriterDep,
    reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why the run is deleted.")],
) -> Deletion:
    """Deletes the run's spans, after writing a tombstone into its audit chain, so it verifies as deleted
    on request rather than as tampered. Refused while a legal hold covers the run. Admin only."""
    try:
        deletion = delete_run(
            client, chain, caller.tenant, run_id, requested_by=caller.key_id, reason=reason, shape=config.ddl_shape
        )
    except HoldActive as error:
        raise HTTPException(status_code=409, detail=str(error)) from error
    if deletion is None:
        raise _not_found(run_id)
    return deletion
