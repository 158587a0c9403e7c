"""Verifies a run against the audit record: exactly the spans its timeline shows (queries.RUN_MEMBERSHIP),
every link that chained them (hash, signature, place in its collector's log, per-run seq and prev_link),
and each log against its signed checkpoints. Names each span altered, removed, inserted or re-sent with
other content, and tells apart spans that retention pruned or a recorded deletion removed
(schema/AUDIT_CHAIN.md; v1 links keep verifying under v1 rules)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from agentledger.ingest.audit_chain import (
    DIGEST_V1,
    DIGEST_V2,
    DIGEST_V3,
    GENESIS,
    LINK_FORMAT_V1,
    LINK_FORMAT_V2,
    ChainLink,
    DigestVersionError,
    link_from_row,
    span_digest,
    span_key,
)
from agentledger.ingest.signing import verify_signature
from agentledger.query_api import queries
from agentledger.query_api.audit_log import CheckedLog, check_log, load_checkpoints
from agentledger.query_api.models import ChainBreak, ChainProblem, SpanFinding, Verification
from agentledger.query_api.store.runs import locate_run
from agentledger.query_api.times import rfc3339_nanos

_TAMPERING = frozenset({"altered", "removed", "inserted"})


@dataclass(frozen=True)
class RunRecord:
    """What verification read: the run's links (own and adopted), the checked logs they are in."""

    links: list[ChainLink]
    logs: dict[str, CheckedLog]


def verify_run(
    client: Client,
    tenant: str,
    run_id: str,
    now_seconds: int | None = None,
    public_key_pem: str | None = None,
    checkpoint_dir: Path | None = None,
) -> Verification | None:
    """None when neither the run index nor the record knows the run for this tenant. With a public key,
    every link's and checkpoint's Ed25519 signature must verify too."""
    return verify_run_record(client, tenant, run_id, now_seconds, public_key_pem, checkpoint_dir)[0]


def verify_run_record(
    client: Client,
    tenant: str,
    run_id: str,
    now_seconds: int | None = None,
    public_key_pem: str | None = None,
    checkpoint_dir: Path | None = None,
) -> tuple[Verification | None, RunRecord]:
    now_seconds = int(time.time()) if now_seconds is None else now_seconds
    location = locate_run(client, tenant, run_id)
    trace_ids = location.summary.trace_ids if location is not None else []
    parameters: dict[str, Any] = {"tenant": tenant, "run_id": run_id, "trace_ids": trace_ids}
    read: list[tuple[ChainLink, ChainLink]] = []  # (as stored, with only this run's entries)
    for row in client.query(queries.RUN_CHAIN, parameters=parameters).named_results():
        stored_link = link_from_row(row)
        adopted = _adopted(stored_link, run_id, set(trace_ids))
        if adopted.span_keys or stored_link.run_id == run_id:
            read.append((stored_link, adopted))
    links = [adopted for _, adopted in read]
    stored_rows = list(client.query(queries.RUN_SPANS_FOR_DIGEST, parameters=parameters).named_results())
    conflicts = list(client.query(queries.RUN_CONFLICTS, parameters=parameters).named_results())
    if not links and not stored_rows:
        record = RunRecord([], {})
        if location is None:
            return None, record
        erased = ChainBreak(seq=0, finding="erased", problem="the run index lists this run but its record is gone:"
                            " its spans and chain links were removed")  # fmt: skip
        return Verification(run_id=run_id, status="tampered", links=0, spans_checked=0, head="", head_signature="",
                            signatures_checked=False, first_bad_link=0, chain_breaks=[erased], findings=[]), record

    breaks: list[ChainBreak] = []
    for stored_link, _ in read:
        breaks += _link_problems(stored_link, public_key_pem)
    breaks += _sequence_problems([link for link in links if link.format_version == LINK_FORMAT_V1], run_id)
    breaks += _log_sequence_problems([link for link in links if link.format_version == LINK_FORMAT_V2], run_id)

    checkpoints = load_checkpoints(client, tenant, checkpoint_dir)
    logs: dict[str, CheckedLog] = {}
    for collector_id in sorted({link.collector_id for link in links if link.format_version == LINK_FORMAT_V2}):
        logs[collector_id] = checked = check_log(client, tenant, collector_id, checkpoints, public_key_pem)
        breaks += checked.status.problems
    after = sum(1 for link in links if link.format_version == LINK_FORMAT_V2 and link.run_id == run_id
                and link.log_index >= logs[link.collector_id].status.checkpoint_size)  # fmt: skip

    findings = _span_findings(links, stored_rows, now_seconds) + [_conflict(row) for row in conflicts]
    tampering = [f for f in findings if f.problem in _TAMPERING]
    bad_links = [b.seq for b in breaks] + [f.link_seq for f in tampering if f.link_seq is not None]
    if not links:
        status = "unchained"
    elif breaks or tampering:
        status = "tampered"
    elif any(f.problem in ("pruned", "deleted") for f in findings):
        status = "pruned"
    else:
        status = "intact"
    own = sorted(
        (link for link in links if link.run_id == run_id),
        key=lambda lk: (lk.format_version, lk.batch_time_ns, lk.collector_id, lk.log_index, lk.seq),
    )
    head = own[-1] if own else None
    verification = Verification(
        run_id=run_id,
        status=status,
        links=len(own),
        spans_checked=len({span_key(row["trace_id"], row["span_id"]) for row in stored_rows}),
        head=head.link if head else "",
        head_signature=head.signature if head else "",
        signatures_checked=public_key_pem is not None and bool(links),
        first_bad_link=min(bad_links) if bad_links else None,
        chain_breaks=breaks,
        findings=findings,
        logs=[checked.status for checked in logs.values()],
        links_after_checkpoint=after,
    )
    return verification, RunRecord(links, logs)


def _adopted(link: ChainLink, run_id: str, trace_ids: set[str]) -> ChainLink:
    """A link of the empty run id names spans of many runs: keep only the entries of this run's traces."""
    if link.run_id != "" or run_id == "":
        return link
    keep = [i for i, key in enumerate(link.span_keys) if key.partition(":")[0] in trace_ids]
    return ChainLink(**{**link.__dict__, "span_keys": tuple(link.span_keys[i] for i in keep),
                        "span_digests": tuple(link.span_digests[i] for i in keep),
                        "span_retain_until": tuple(link.span_retain_until[i] for i in keep)})  # fmt: skip


def _break(link: ChainLink, finding: ChainProblem, problem: str) -> ChainBreak:
    return ChainBreak(seq=link.seq, finding=finding, problem=problem, collector_id=link.collector_id,
                      log_index=link.log_index if link.format_version == LINK_FORMAT_V2 else None)  # fmt: skip


def _link_problems(link: ChainLink, public_key_pem: str | None) -> list[ChainBreak]:
    problems = []
    try:
        if len(link.span_retain_until) != len(link.span_keys) or link.recomputed() != link.link:
            problems.append(_break(link, "altered_link", "its hash does not match its contents (kind, note, entries"
                                   " or position changed)" if link.format_version == LINK_FORMAT_V2
                                   else "its hash does not match its contents"))  # fmt: skip
    except DigestVersionError as error:
        problems.append(_break(link, "unknown_format", str(error)))
    if public_key_pem is not None and not verify_signature(public_key_pem, link.link, link.signature):
        problems.append(_break(link, "bad_signature", "its signature does not verify with the configured public key"))
    return problems


def _sequence_problems(v1_links: list[ChainLink], run_id: str) -> list[ChainBreak]:
    """v1: the run's links walked in seq order from the genesis, as v1 always did."""
    problems = []
    previous = GENESIS
    for index, link in enumerate(sorted((lk for lk in v1_links if lk.run_id == run_id), key=lambda lk: lk.seq), 1):
        if link.seq != index:
            problems.append(_break(link, "missing_link", f"link {index} is missing or out of order"))
        if link.prev_link != previous:
            problems.append(_break(link, "broken_pointer", "does not point at the previous link"))
        previous = link.link
    return problems


def _log_sequence_problems(v2_links: list[ChainLink], run_id: str) -> list[ChainBreak]:
    """v2: within each collector's log, a run's links in log order must have seq 1, 2, … and each point
    at the one before (the empty run id's links are only partly read, so its chain is left to the log)."""
    problems = []
    chains: dict[tuple[str, str], list[ChainLink]] = {}
    for link in v2_links:
        if link.run_id != "":
            chains.setdefault((link.collector_id, link.run_id), []).append(link)
    for (collector_id, chain_run), chain in sorted(chains.items()):
        chain.sort(key=lambda lk: (lk.log_index, lk.seq))
        seen: dict[str, ChainLink] = {}
        unique = []
        for link in chain:
            if link.link in seen:
                problems.append(_break(link, "replayed_link", f"link {link.seq} of run {chain_run!r} is stored"
                                       f" twice in log {collector_id}: an old link inserted again"))  # fmt: skip
                continue
            seen[link.link] = link
            unique.append(link)
        previous, expected = GENESIS, 1
        present = {link.seq for link in unique}
        for link in unique:
            if link.seq < expected:
                problems.append(_break(link, "reordered", f"link {link.seq} of run {chain_run!r} comes after link"
                                       f" {expected - 1} in log {collector_id}"))  # fmt: skip
            elif link.seq > expected and set(range(expected, link.seq)) <= present:
                problems.append(_break(link, "reordered", f"link {link.seq} of run {chain_run!r} comes before link"
                                       f" {expected} in log {collector_id}"))  # fmt: skip
            elif link.seq > expected:
                missing = ", ".join(str(s) for s in range(expected, link.seq))
                problems.append(_break(link, "missing_link", f"link(s) {missing} of run {chain_run!r} are missing"
                                       f" from log {collector_id}"))  # fmt: skip
            if link.prev_link != previous:
                problems.append(_break(link, "broken_pointer", "does not point at the previous link"))
            previous, expected = link.link, max(expected, link.seq) + 1
    return problems


def _stored_digest(row: Mapping[str, Any], version: int, cache: dict[int, str]) -> str:
    if version not in cache:
        cache[version] = span_digest(row, version)
    return cache[version]


def _span_findings(links: list[ChainLink], stored_rows: list[dict[str, Any]], now_seconds: int) -> list[SpanFinding]:
    chained: dict[str, list[tuple[str, int, int, int, str]]] = {}  # key -> (digest, version, seq, until, collector)
    tombstones: dict[str, tuple[int, int, str]] = {}  # key -> (seq, time ns, note)
    for link in sorted(links, key=lambda lk: (lk.batch_time_ns, lk.collector_id, lk.log_index, lk.seq)):
        version = link.digest_version if link.format_version == LINK_FORMAT_V2 else DIGEST_V1
        for key, digest, until in zip(link.span_keys, link.span_digests, link.span_retain_until, strict=False):
            if link.kind == "tombstone":
                tombstones[key] = (link.seq, link.batch_time_ns, link.note)
            elif all(existing[0] != digest for existing in chained.get(key, [])):
                chained.setdefault(key, []).append((digest, version, link.seq, until, link.collector_id))
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in stored_rows:
        stored.setdefault(span_key(row["trace_id"], row["span_id"]), []).append(row)

    findings: list[SpanFinding] = []
    for key, entries in sorted(chained.items(), key=lambda item: (item[1][0][2], item[0])):
        digest, version, seq, until, _ = entries[0]
        copies = stored.get(key)
        if len(entries) > 1:
            others = "; ".join(f"{c} chained {d}" for d, _, _, _, c in entries)
            findings.append(_finding(key, "conflict", seq, _name(copies), note=f"chained with different content by"
                                     f" more than one collector ({others})"))  # fmt: skip
        if copies is None:
            if key in tombstones:
                _, tomb_ns, note = tombstones[key]
                findings.append(_finding(key, "deleted", seq, "", rfc3339_nanos(tomb_ns), note))
            elif until <= now_seconds:
                at = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                findings.append(_finding(key, "pruned", seq, "", at))
            else:
                findings.append(_finding(key, "removed", seq, ""))
            continue
        accepted = {(d, v) for d, v, _, _, _ in entries}
        for row in copies:
            cache: dict[int, str] = {}
            if not any(_stored_digest(row, v, cache) == d for d, v in accepted):
                findings.append(_finding(key, "altered", seq, str(row["name"])))
                break
    for key in sorted(set(stored) - set(chained)):
        findings.append(_finding(key, "inserted", None, _name(stored[key])))
    return findings


def _name(copies: list[dict[str, Any]] | None) -> str:
    return str(copies[0]["name"]) if copies else ""


def _conflict(row: Mapping[str, Any]) -> SpanFinding:
    version = int(row["digest_version"])
    label = {DIGEST_V1: "v1", DIGEST_V2: "v2", DIGEST_V3: "v3"}.get(version, str(version))
    note = (f"conflicting re-send: collector {row['collector_id']} received this span id again with other content"
            f" (digest {row['received_digest']}, stored {label} digest {row['chained_digest']}); the stored copy"
            " is kept")  # fmt: skip
    return SpanFinding(trace_id=str(row["trace_id"]), span_id=str(row["span_id"]), name=str(row["name"]),
                       problem="conflict", link_seq=None, at=rfc3339_nanos(int(row["received_ns"])),
                       note=note)  # fmt: skip


def _finding(key: str, problem: str, seq: int | None, name: str, at: str = "", note: str = "") -> SpanFinding:
    trace_id, _, span_id = key.partition(":")
    return SpanFinding(trace_id=trace_id, span_id=span_id, name=name, problem=problem,
                       link_seq=seq, at=at, note=note)  # fmt: skip

