#!/usr/bin/env python3
"""Checks an agentledger evidence bundle offline: `python3 verify_bundle.py BUNDLE.zip [--public-key KEY.pem]`.

Self-contained on purpose (standard library; `cryptography` only to check signatures): it reimplements
AUDIT_CHAIN.md from the document, not from agentledger's code, so an auditor can read all of it. It checks
the manifest's file hashes, every span digest, every link hash, each run's links in order, each link's
RFC 9162 inclusion proof against its log's checkpoint, the signatures (with a public key the auditor got
from the operator), and that every chained span is stored (or was deleted or pruned) and every stored span
chained. Prints one line per problem; exit status 0 verified, 1 problems found, 2 unreadable bundle.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import zipfile
from typing import Any

GENESIS = "sha256:" + "0" * 64
# AUDIT_CHAIN.md, "Span digest v2": the frozen fields and how each is encoded.
V2_FIELDS = (
    ("tenant", "text"), ("run_id", "text"), ("trace_id", "text"), ("span_id", "text"), ("parent_span_id", "text"),
    ("start_time", "time"), ("end_time", "time"), ("duration_ns", "int"), ("name", "text"), ("kind", "text"),
    ("status_code", "text"), ("status_message", "text"), ("service_name", "text"), ("scope_name", "text"),
    ("scope_version", "text"), ("verified_agent_id", "text"), ("identity_mismatch", "bool"), ("truncated", "texts"),
    ("approver", "text"), ("approval_decision", "text"), ("provenance", "text"), ("policy_decision", "text"),
    ("policy_id", "text"), ("context_hash", "text"), ("run_outcome", "text"), ("entry_type", "text"),
    ("tool_access", "text"), ("arguments_hash", "text"), ("target", "text"), ("write_ref", "text"),
    ("write_system", "text"), ("agent_id", "text"), ("agent_name", "text"), ("input_messages", "text"),
    ("operation", "text"), ("output_messages", "text"), ("model", "text"), ("retrieval_documents", "text"),
    ("system_instructions", "text"), ("tool_arguments", "text"), ("tool_call_id", "text"), ("tool_result", "text"),
    ("tool_name", "text"), ("input_tokens", "int"), ("output_tokens", "int"), ("input_value", "text"),
    ("output_value", "text"), ("attributes", "map"), ("resource_attributes", "map"), ("event_times", "times"),
    ("event_names", "texts"), ("event_attributes", "maps"), ("link_trace_ids", "texts"), ("link_span_ids", "texts"),
    ("link_attributes", "maps"),
)  # fmt: skip
# "Span digest v3": the v2 fields, then the columns added since, encoded the same way.
V3_FIELDS = (*V2_FIELDS, ("conversation_id", "text"))
# The typed digest versions.
TYPED_FIELDS = {2: V2_FIELDS, 3: V3_FIELDS}
# "Span digest v1": the v2 columns, as a JSON array.
V1_FIELDS = tuple(name for name, _ in V2_FIELDS)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def f(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


def ftext(value: str) -> bytes:
    return f(value.encode("utf-8"))


def fint(value: int) -> bytes:
    return f(str(int(value)).encode())


def fpairs(pairs: list[list[str]]) -> bytes:
    items = sorted((str(k), str(v)) for k, v in pairs)
    return fint(len(items)) + b"".join(ftext(k) + ftext(v) for k, v in items)


def encode(kind: str, value: Any) -> bytes:
    if kind == "text":
        return ftext(value)
    if kind in ("int", "time"):
        return fint(value)
    if kind == "bool":
        return fint(1 if value else 0)
    if kind == "texts":
        return fint(len(value)) + b"".join(ftext(v) for v in value)
    if kind == "times":
        return fint(len(value)) + b"".join(fint(v) for v in value)
    if kind == "map":
        return fpairs(value)
    return fint(len(value)) + b"".join(fpairs(m) for m in value)


def digest(values: dict[str, Any], version: int) -> str:
    if version == 1:
        row = []
        for name in V1_FIELDS:
            value = values[name]
            if name in ("attributes", "resource_attributes"):
                value = sorted([str(k), str(v)] for k, v in value)
            elif name in ("event_attributes", "link_attributes"):
                value = [sorted([str(k), str(v)] for k, v in m) for m in value]
            row.append(value)
        return sha(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())
    fields = TYPED_FIELDS.get(version)
    if fields is None:
        return f"unknown span digest version {version}"
    return sha(b"".join(encode(kind, values[name]) for name, kind in fields))


def link_hash(link: dict[str, Any]) -> str:
    entries = list(zip(link["span_keys"], link["span_digests"], link["span_retain_until"], strict=True))
    if link["format_version"] == 1:
        return sha(json.dumps([link["prev_link"], link["batch_time_ns"], [list(e) for e in entries]],
                              ensure_ascii=False, separators=(",", ":")).encode())  # fmt: skip
    data = b"".join([
        ftext("agentledger.link"), fint(2), ftext(link["tenant"]), ftext(link["run_id"]), ftext(link["collector_id"]),
        fint(link["log_index"]), fint(link["seq"]), ftext(link["kind"]), ftext(link["note"]),
        fint(link["digest_version"]), fint(link["batch_time_ns"]), ftext(link["prev_link"]), fint(len(entries)),
        *(ftext(k) + ftext(d) + fint(u) for k, d, u in entries),
    ])  # fmt: skip
    return sha(data)


def checkpoint_hash(c: dict[str, Any]) -> str:
    return sha(ftext(c["format"]) + ftext(c["tenant"]) + ftext(c["collector_id"]) + fint(c["size"])
               + ftext(c["root"]) + fint(c["time_ns"]))  # fmt: skip


def leaf(link: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(link[len("sha256:"):])).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def included(index: int, size: int, leaf_hash: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162, 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def signature_ok(public_key_pem: bytes, text: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(public_key_pem)
    try:
        key.verify(base64.b64decode(signature), text.encode())  # type: ignore[union-attr, call-arg]
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify(bundle: bytes, public_key_pem: bytes | None = None) -> list[str]:
    problems: list[str] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(bundle))
        manifest = json.loads(archive.read("manifest.json"))
        for name, expected in manifest["files"].items():
            if hashlib.sha256(archive.read(name)).hexdigest() != expected:
                problems.append(f"{name}: its SHA-256 differs from manifest.json")
        spans = json.loads(archive.read("spans.json"))
        links = json.loads(archive.read("chain.json"))
        checkpoints = json.loads(archive.read("checkpoints.json"))
        proofs = json.loads(archive.read("proofs.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        return [*problems, f"unreadable bundle: {error}"]
    run_id, traces = manifest["run_id"], set(manifest["trace_ids"])

    stored: dict[str, set[str]] = {}
    for span in spans:
        if digest(span["values"], span["digest_version"]) != span["digest"]:
            problems.append(f"span {span['span_key']}: its digest does not match its values")
        stored.setdefault(span["span_key"], set()).add(span["digest"])

    chains: dict[tuple[str, str], list[dict[str, Any]]] = {}
    chained: dict[str, set[str]] = {}
    tombstoned: set[str] = set()
    for link in links:
        where = f"link {link['seq']} of run {link['run_id']!r} ({link['collector_id'] or 'v1'})"
        if link_hash(link) != link["link"]:
            problems.append(f"{where}: its hash does not match its contents")
        if public_key_pem is not None and not signature_ok(public_key_pem, link["link"], link["signature"]):
            problems.append(f"{where}: its signature does not verify")
        if link["run_id"] != "":
            chains.setdefault((link["collector_id"], link["run_id"]), []).append(link)
        for key, span_digest in zip(link["span_keys"], link["span_digests"], strict=True):
            if link["run_id"] == run_id or key.split(":")[0] in traces:
                if link["kind"] == "tombstone":
                    tombstoned.add(key)
                else:
                    chained.setdefault(key, set()).add(span_digest)
    for (collector_id, chain_run), chain in sorted(chains.items()):
        previous = GENESIS
        for expected, link in enumerate(sorted(chain, key=lambda item: (item["log_index"], item["seq"])), start=1):
            if link["seq"] != expected or link["prev_link"] != previous:
                problems.append(f"link {link['seq']} of run {chain_run!r} ({collector_id or 'v1'}): out of order,"
                                " missing or replayed links before it")  # fmt: skip
            previous = link["link"]

    by_log = {c["collector_id"]: c for c in checkpoints}
    for c in checkpoints:
        if public_key_pem is not None and not signature_ok(public_key_pem, checkpoint_hash(c), c["signature"]):
            problems.append(f"checkpoint of log {c['collector_id']}: its signature does not verify")
    proven = {(p["collector_id"], p["log_index"]): p for p in proofs}
    for link in links:
        if link["format_version"] < 2:
            continue
        where = f"link {link['seq']} of run {link['run_id']!r} ({link['collector_id']})"
        checkpoint = by_log.get(link["collector_id"])
        proof = proven.get((link["collector_id"], link["log_index"]))
        if checkpoint is None or link["log_index"] >= checkpoint["size"]:
            problems.append(f"{where}: appended after its log's latest checkpoint (not yet covered)")
        elif proof is None or not included(link["log_index"], checkpoint["size"], leaf(link["link"]),
                                           [bytes.fromhex(h[7:]) for h in proof["path"]],
                                           bytes.fromhex(checkpoint["root"][7:])):  # fmt: skip
            problems.append(f"{where}: not included in its log's checkpoint (size {checkpoint['size']})")

    for key, digests in sorted(chained.items()):
        copies = stored.get(key)
        if copies is None:
            if key not in tombstoned and key not in manifest.get("pruned", []):
                problems.append(f"span {key}: chained but not in the bundle (removed)")
        elif not copies <= digests:
            problems.append(f"span {key}: stored content differs from what was chained (altered)")
    for key in sorted(set(stored) - set(chained)):
        problems.append(f"span {key}: in the bundle but never chained (inserted)")
    return problems


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    public_key = None
    if "--public-key" in argv:
        position = argv.index("--public-key")
        with open(argv[position + 1], "rb") as file:
            public_key = file.read()
        argv = argv[:position] + argv[position + 2:]
    with open(argv[0], "rb") as file:
        problems = verify(file.read(), public_key)
    for problem in problems:
        print(problem)
    if problems and problems[-1].startswith("unreadable bundle"):
        return 2
    print("verified" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
