"""Evidence bundles: one zip with a run's spans, links, checkpoints and inclusion proofs, timeline and
verification, checkable offline with the verify_bundle.py script it carries.

Layout: spans.json (every stored span copy: its digest values, digest version and digest), chain.json (the
links that chained them, every field), checkpoints.json (the latest checkpoint of each log involved),
proofs.json (an RFC 9162 inclusion proof of each link in its checkpoint), spans.parquet and chain.parquet
(the same, for Parquet readers), timeline.json, verification.json, AUDIT_CHAIN.md, verify_bundle.py,
README.md and manifest.json (SHA-256 of every other file, the run's trace ids and head).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from agentledger import __version__
from agentledger.ingest.audit_chain import (
    CHAIN_COLUMNS,
    CURRENT_DIGEST_VERSION,
    DIGEST_COLUMNS,
    DIGEST_FIELDS_V1,
    DIGEST_FIELDS_V2_KINDS,
    DIGEST_FIELDS_V3_KINDS,
    LINK_FORMAT_V2,
    span_digest,
    span_key,
)
from agentledger.ingest.checkpoints import latest_checkpoints
from agentledger.query_api import queries
from agentledger.query_api.audit_log import load_checkpoints
from agentledger.query_api.read_pool import InlineReads
from agentledger.query_api.store.runs import locate_run
from agentledger.query_api.timeline import load_timeline
from agentledger.query_api.verify import verify_run_record
from agentledger.schema.canonical import compact_json

_README = """# Evidence bundle for run {run_id}

Made by agentledger {version} at {created} for tenant {tenant}. Verification when exported: {status}.

Check it offline: `python3 verify_bundle.py THIS.zip --public-key KEY.pem` (Python 3.10+, standard
library; `cryptography` for the signatures; use the public key you got from the operator, not the one in
manifest.json, which only says which key signed). It prints each problem and "verified" when there is
none. What it does, so you can do it with any other tool (AUDIT_CHAIN.md has every byte):

1. manifest.json lists the SHA-256 of every other file; recompute them. A difference means the bundle
   was changed after export.
2. spans.json holds each stored span copy: `values` (the digest's fields, times in nanoseconds, maps
   as [key, value] pairs), `digest_version` and `digest`. Recompute each digest from its values
   (AUDIT_CHAIN.md, "Span digest v1" / "v2").
3. chain.json holds every link that chained the run's spans, with all its fields; recompute each link
   hash ("Links v2": every field is under the hash, kind and note included; v1 links as "Links v1"). A
   run's links in one collector's log must have seq 1, 2, … in log order, each pointing at the previous.
4. checkpoints.json holds the latest signed checkpoint of each log; proofs.json an RFC 9162 inclusion
   proof of each link in it. Check each proof against the checkpoint's root, and each signature
   (links sign their hash text, checkpoints the hash of their fields). Keep a copy of the checkpoints:
   a later bundle's checkpoint of the same log must extend them.
5. Every chained (span key, digest) must have a stored span with that digest (unless a tombstone
   deleted it, or retention pruned it: manifest.json `pruned`), and every stored span must be chained.
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


def _values(row: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name in DIGEST_COLUMNS:
        value = row[name]
        if name in ("attributes", "resource_attributes"):
            value = [[str(k), str(v)] for k, v in value]
        elif name in ("event_attributes", "link_attributes"):
            value = [[[str(k), str(v)] for k, v in item] for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        values[name] = value
    return values


def build_bundle(
    client: Client, tenant: str, run_id: str, public_key_pem: str | None = None, checkpoint_dir: Path | None = None
) -> bytes | None:
    """The bundle's bytes, or None when the tenant has no such run."""
    verification, record = verify_run_record(client, tenant, run_id, public_key_pem=public_key_pem,
                                             checkpoint_dir=checkpoint_dir)  # fmt: skip
    if verification is None:
        return None
    location = locate_run(client, tenant, run_id)
    trace_ids = location.summary.trace_ids if location is not None else []
    timeline = load_timeline(InlineReads(client), tenant, run_id)
    parameters = {"tenant": tenant, "run_id": run_id, "trace_ids": trace_ids}
    stored_links = [dict(row) for row in client.query(queries.RUN_CHAIN, parameters=parameters).named_results()]
    versions: dict[str, int] = {}
    for link in stored_links:
        version = int(link["digest_version"]) if int(link["format_version"]) >= LINK_FORMAT_V2 else 1
        for key in link["span_keys"]:
            versions.setdefault(key, version)
    spans = []
    for row in client.query(queries.RUN_SPANS_FOR_DIGEST, parameters=parameters).named_results():
        key = span_key(row["trace_id"], row["span_id"])
        version = versions.get(key, CURRENT_DIGEST_VERSION)
        spans.append({"span_key": key, "name": row["name"], "start_time_ns": int(row["start_time"]),
                      "digest_version": version, "values": _values(row),
                      "digest": span_digest(row, version)})  # fmt: skip
    links: list[dict[str, Any]] = []
    for stored in stored_links:
        link = {name: list(stored[name]) if isinstance(stored[name], tuple | list) else stored[name]
                for name in CHAIN_COLUMNS}  # fmt: skip
        link["span_retain_until"] = [int(value) for value in stored["span_retain_until"]]
        links.append(link)
    latest = latest_checkpoints(load_checkpoints(client, tenant, checkpoint_dir))
    involved = sorted({str(link["collector_id"]) for link in links if int(link["format_version"]) >= LINK_FORMAT_V2})
    checkpoints = [latest[(tenant, cid)].to_json() for cid in involved if (tenant, cid) in latest]
    proofs = []
    for link in links:
        checked = record.logs.get(str(link["collector_id"]))
        if int(link["format_version"]) < LINK_FORMAT_V2 or checked is None or checked.latest is None:
            continue
        path = checked.proof(int(link["log_index"]))
        if int(link["log_index"]) < checked.latest.size:
            proofs.append({"collector_id": link["collector_id"], "log_index": int(link["log_index"]),
                           "link": link["link"], "tree_size": checked.latest.size, "root": checked.latest.root,
                           "path": path})  # fmt: skip
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    spans_table = pa.Table.from_pylist(
        [{"span_key": s["span_key"], "name": s["name"], "start_time_ns": s["start_time_ns"],
          "digest_version": s["digest_version"], "values": compact_json(s["values"]).decode(), "digest": s["digest"]}
         for s in spans],
        schema=pa.schema([("span_key", pa.string()), ("name", pa.string()), ("start_time_ns", pa.int64()),
                          ("digest_version", pa.int64()), ("values", pa.string()), ("digest", pa.string())]),
    )  # fmt: skip
    schema_files = resources.files("agentledger.schema")
    files: dict[str, bytes] = {
        "spans.json": _json(spans),
        "chain.json": _json(links),
        "checkpoints.json": _json(checkpoints),
        "proofs.json": _json(proofs),
        "spans.parquet": _parquet(spans_table),
        "chain.parquet": _parquet(client.query_arrow(queries.RUN_CHAIN, parameters=parameters)),
        "timeline.json": (timeline.model_dump_json(indent=2) if timeline else "null").encode(),
        "verification.json": verification.model_dump_json(indent=2).encode(),
        "AUDIT_CHAIN.md": schema_files.joinpath("AUDIT_CHAIN.md").read_bytes(),
        "verify_bundle.py": schema_files.joinpath("verify_bundle.py").read_bytes(),
        "README.md": _README.format(run_id=run_id, version=__version__, created=created, tenant=tenant,
                                    status=verification.status).encode(),
    }  # fmt: skip
    manifest = {
        "format": "agentledger.evidence.v2",
        "run_id": run_id,
        "tenant": tenant,
        "trace_ids": trace_ids,
        "created_at": created,
        "agentledger_version": __version__,
        "head": verification.head,
        "head_signature": verification.head_signature,
        "public_key": public_key_pem or "",
        "pruned": sorted(span_key(f.trace_id, f.span_id) for f in verification.findings
                         if f.problem in ("pruned", "deleted")),
        "digest_fields_v1": list(DIGEST_FIELDS_V1),
        "digest_fields_v2": [list(pair) for pair in DIGEST_FIELDS_V2_KINDS],
        "digest_fields_v3": [list(pair) for pair in DIGEST_FIELDS_V3_KINDS],
        "files": {name: _sha256(data) for name, data in files.items()},
    }  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    return buffer.getvalue()
