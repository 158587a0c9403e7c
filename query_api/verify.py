"""Verifies a run against its audit hash chain: recomputes every link and every stored span's digest and
names each span altered, removed or inserted out of band, telling apart spans that retention pruned or a
recorded deletion removed (schema/AUDIT_CHAIN.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from agentledger.ingest.audit_chain import GENESIS, chain_link, span_digest, span_key
from agentledger.ingest.signing import verify_signature
from agentledger.query_api import queries
from agentledger.query_api.models import ChainBreak, SpanFinding, Verification
from agentledger.query_api.times import rfc3339_nanos

_TAMPERING = frozenset({"altered", "removed", "inserted"})


def verify_run(
    client: Client, tenant: str, run_id: str, now_seconds: int | None = None, public_key_pem: str | None = None
) -> Verification | None:
    """None when the run has neither spans nor chain links for this tenant. With a public key, every
    link's Ed25519 signature must verify too."""
    now_seconds = int(time.time()) if now_seconds is None else now_seconds
    parameters = {"tenant": tenant, "run_id": run_id}
    chain = list(client.query(queries.RUN_CHAIN, parameters=parameters).named_results())
    stored: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for row in client.query(queries.RUN_SPANS_FOR_DIGEST, parameters=parameters).named_results():
        key = span_key(row["trace_id"], row["span_id"])
        stored.setdefault(key, set()).add(span_digest(row))
        names[key] = row["name"]
    if not chain and not stored:
        return None

    breaks: list[ChainBreak] = []
    chained: dict[str, tuple[str, int, int]] = {}  # key -> (digest, seq, retain_until)
    tombstones: dict[str, tuple[int, int, str]] = {}  # key -> (seq, time ns, note)
    previous = GENESIS
    for index, link in enumerate(chain, start=1):
        seq = int(link["seq"])
        keys, digests = list(link["span_keys"]), list(link["span_digests"])
        retain_until = [int(value) for value in link["span_retain_until"]]
        if seq != index:
            breaks.append(ChainBreak(seq=seq, problem=f"link {index} is missing or out of order"))
        if link["prev_link"] != previous:
            breaks.append(ChainBreak(seq=seq, problem="does not point at the previous link"))
        if len(retain_until) != len(keys) or (
            chain_link(link["prev_link"], int(link["batch_time_ns"]), keys, digests, retain_until) != link["link"]
        ):
            breaks.append(ChainBreak(seq=seq, problem="its hash does not match its contents"))
        if public_key_pem is not None and not verify_signature(public_key_pem, link["link"], link["signature"]):
            breaks.append(ChainBreak(seq=seq, problem="its signature does not verify with the configured public key"))
        previous = link["link"]
        for key, digest, until in zip(keys, digests, retain_until, strict=False):
            if link["kind"] == "tombstone":
                tombstones[key] = (seq, int(link["batch_time_ns"]), str(link["note"]))
            else:
                chained[key] = (digest, seq, until)

    findings: list[SpanFinding] = []
    for key, (digest, seq, until) in sorted(chained.items(), key=lambda item: (item[1][1], item[0])):
        copies = stored.get(key)
        if copies is None:
            if key in tombstones:
                _, tomb_ns, note = tombstones[key]
                findings.append(_finding(key, "deleted", seq, "", rfc3339_nanos(tomb_ns), note))
            elif until <= now_seconds:
                at = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                findings.append(_finding(key, "pruned", seq, "", at))
            else:
                findings.append(_finding(key, "removed", seq, ""))
        elif copies != {digest}:
            findings.append(_finding(key, "altered", seq, names.get(key, "")))
    for key in sorted(set(stored) - set(chained)):
        findings.append(_finding(key, "inserted", None, names.get(key, "")))

    tampering = [f for f in findings if f.problem in _TAMPERING]
    bad_links = [b.seq for b in breaks] + [f.link_seq for f in tampering if f.link_seq is not None]
    if not chain:
        status = "unchained"
    elif breaks or tampering:
        status = "tampered"
    elif findings:
        status = "pruned"
    else:
        status = "intact"
    return Verification(
        run_id=run_id,
        status=status,
        links=len(chain),
        spans_checked=len(stored),
        head=previous if chain else "",
        head_signature=str(chain[-1]["signature"]) if chain else "",
        signatures_checked=public_key_pem is not None and bool(chain),
        first_bad_link=min(bad_links) if bad_links else None,
        chain_breaks=breaks,
        findings=findings,
    )


def _finding(key: str, problem: str, seq: int | None, name: str, at: str = "", note: str = "") -> SpanFinding:
    trace_id, _, span_id = key.partition(":")
    return SpanFinding(trace_id=trace_id, span_id=span_id, name=name, problem=problem, link_seq=seq, at=at, note=note)
