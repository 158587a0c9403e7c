"""Evidence bundles: one zip with a run's spans, chain, timeline and verification, checkable offline.

Layout: spans.parquet (one row per stored span copy, columns as the digest reads them), chain.parquet
(the run's links), timeline.json, verification.json, AUDIT_CHAIN.md (the algorithm), README.md (how to
check the bundle) and manifest.json (SHA-256 of every other file and the chain head).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from agentledger import __version__
from agentledger.ingest.audit_chain import DIGEST_FIELDS, canonical_row
from agentledger.query_api import queries
from agentledger.query_api.timeline import load_timeline
from agentledger.query_api.verify import verify_run

_README = """# Evidence bundle for run {run_id}

Made by agentledger {version} at {created} for tenant {tenant}. Verification when exported: {status}.

Check it offline, with any SHA-256 and Parquet reader:

1. manifest.json lists the SHA-256 of every other file; recompute them. A difference means the bundle
   was changed after export.
2. spans.parquet holds each stored span as the digest reads it: column `canonical` is the JSON array
   of the span's values (AUDIT_CHAIN.md, "Span digest"); `digest` = "sha256:" + SHA-256 of it.
   Recompute each digest from `canonical`, and check `canonical` against the other columns if you
   want to read the values themselves.
3. chain.parquet holds the run's links in `seq` order; recompute each link from prev_link,
   batch_time_ns, span_keys and span_digests as AUDIT_CHAIN.md says ("Links"), and check that each
   points at the previous one. When links are signed, `signature` is a base64 Ed25519 signature of the
   link text: check it (at least the head's) with the public key you got from the operator, not the
   one in manifest.json, which only says which key signed.
4. Every chained (span_key, digest) must have a stored span with that digest, and every stored span
   must be chained. manifest.json's `head` is the last link: compare it with any copy kept elsewhere.
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def build_bundle(client: Client, tenant: str, run_id: str, public_key_pem: str | None = None) -> bytes | None:
    """The bundle's bytes, or None when the tenant has no such run."""
    verification = verify_run(client, tenant, run_id, public_key_pem=public_key_pem)
    if verification is None:
        return None
    timeline = load_timeline(client, tenant, run_id)
    parameters = {"tenant": tenant, "run_id": run_id}
    span_rows = []
    for row in client.query(queries.RUN_SPANS_FOR_DIGEST, parameters=parameters).named_results():
        canonical = _canonical_json(canonical_row(row))
        span_rows.append({
            "span_key": f"{row['trace_id']}:{row['span_id']}",
            "name": row["name"],
            "start_time_ns": int(row["start_time"]),
            "canonical": canonical,
            "digest": "sha256:" + _sha256(canonical.encode()),
        })  # fmt: skip
    spans = pa.Table.from_pylist(
        span_rows,
        schema=pa.schema([("span_key", pa.string()), ("name", pa.string()), ("start_time_ns", pa.int64()),
                          ("canonical", pa.string()), ("digest", pa.string())]),
    )  # fmt: skip
    chain = client.query_arrow(queries.RUN_CHAIN, parameters=parameters)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    files: dict[str, bytes] = {
        "spans.parquet": _parquet(spans),
        "chain.parquet": _parquet(chain),
        "timeline.json": (timeline.model_dump_json(indent=2) if timeline else "null").encode(),
        "verification.json": verification.model_dump_json(indent=2).encode(),
        "AUDIT_CHAIN.md": resources.files("agentledger.schema").joinpath("AUDIT_CHAIN.md").read_bytes(),
        "README.md": _README.format(run_id=run_id, version=__version__, created=created, tenant=tenant,
                                    status=verification.status).encode(),
    }  # fmt: skip
    manifest = {
        "run_id": run_id,
        "tenant": tenant,
        "created_at": created,
        "agentledger_version": __version__,
        "head": verification.head,
        "head_signature": verification.head_signature,
        "public_key": public_key_pem or "",
        "digest_fields": list(DIGEST_FIELDS),
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    return buffer.getvalue()
