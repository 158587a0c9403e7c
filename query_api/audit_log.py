"""Checks each collector's audit log against its signed checkpoints: every checkpoint's size and Merkle root
must recompute from the stored links (one pass, each prefix root from the frontier), so a truncated,
gapped, replayed or rewritten log is named even when a whole run was erased (schema/AUDIT_CHAIN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clickhouse_connect.driver.client import Client

from agentledger.ingest.checkpoints import Checkpoint, read_checkpoints
from agentledger.ingest.merkle import CompactRange, inclusion_path, leaf_hash, root_text
from agentledger.ingest.signing import verify_signature
from agentledger.query_api import queries
from agentledger.query_api.models import ChainBreak, LogStatus, LogVerification
from agentledger.query_api.times import rfc3339_nanos


def load_checkpoints(client: Client, tenant: str, checkpoint_dir: Path | None) -> list[Checkpoint]:
    """The tenant's checkpoints from the sink files (outside ClickHouse) and the table, without repeats.
    Both are checked: the files are what SQL access cannot rewrite; a forged table row fails its signature
    or its root."""
    found = read_checkpoints(checkpoint_dir, tenant) if checkpoint_dir is not None else []
    for row in client.query(queries.CHECKPOINTS, parameters={"tenant": tenant}).named_results():
        found.append(Checkpoint(tenant=str(row["tenant"]), collector_id=str(row["collector_id"]), size=int(row["size"]),
                                root=str(row["root"]), time_ns=int(row["time_ns"]), signature=str(row["signature"]),
                                format=str(row["format"])))  # fmt: skip
    return sorted(set(found), key=lambda c: (c.collector_id, c.size, c.time_ns, c.root))


@dataclass
class CheckedLog:
    status: LogStatus
    leaves: list[bytes] = field(default_factory=list)  # by log index, first copy of each
    links: list[str] = field(default_factory=list)
    latest: Checkpoint | None = None

    def proof(self, log_index: int) -> list[str]:
        """The RFC 9162 audit path of a link in the latest checkpoint's tree (empty when not covered)."""
        if self.latest is None or log_index >= min(self.latest.size, len(self.leaves)):
            return []
        return [root_text(node) for node in inclusion_path(log_index, self.leaves[: self.latest.size])]


def check_log(
    client: Client, tenant: str, collector_id: str, checkpoints: list[Checkpoint], public_key_pem: str | None
) -> CheckedLog:
    rows = client.query(queries.LOG_LEAVES, parameters={"tenant": tenant, "collector_id": collector_id}).result_rows
    problems: list[ChainBreak] = []
    by_index: dict[int, list[tuple[str, str, int]]] = {}
    for log_index, run_id, seq, _kind, link in rows:
        by_index.setdefault(int(log_index), []).append((str(link), str(run_id), int(seq)))
    size = max(by_index) + 1 if by_index else 0
    mine = [c for c in checkpoints if c.collector_id == collector_id]
    # With a key, only signed checkpoints are trusted. Unsigned ones (written before signing was turned
    # on) are set aside silently; a signature that fails is a finding.
    for checkpoint in mine:
        if public_key_pem is not None and checkpoint.signature and not verify_signature(
            public_key_pem, checkpoint.hash(), checkpoint.signature
        ):
            problems.append(ChainBreak(seq=0, finding="bad_checkpoint", collector_id=collector_id, problem=(
                f"the checkpoint of size {checkpoint.size} at {rfc3339_nanos(checkpoint.time_ns)} does not verify"
                " with the configured public key")))  # fmt: skip
    trusted = [c for c in mine if public_key_pem is None or verify_signature(public_key_pem, c.hash(), c.signature)]
    latest = max(trusted, key=lambda c: (c.size, c.time_ns), default=None)
    covered = max((c.size for c in trusted), default=0)
    missing = [index for index in range(size) if index not in by_index]  # past the end: truncation, below
    if missing:
        problems.append(ChainBreak(seq=0, finding="log_gap", collector_id=collector_id, log_index=missing[0], problem=(
            f"log {collector_id} has no link at {_indices(missing)}: links were removed from it")))  # fmt: skip
    for index, copies in sorted(by_index.items()):
        if len(copies) > 1:
            same = len({link for link, _, _ in copies}) == 1
            problems.append(ChainBreak(
                seq=copies[0][2], finding="replayed_link" if same else "altered_link", collector_id=collector_id,
                log_index=index, problem=(f"log {collector_id} holds {len(copies)} copies of its link {index}"
                                          f" (run {copies[0][1]!r}, seq {copies[0][2]})"
                                          + (": a stored link inserted again" if same else " that differ")),
            ))  # fmt: skip
    if size < covered:
        problems.append(ChainBreak(seq=0, finding="truncated", collector_id=collector_id, log_index=size, problem=(
            f"log {collector_id} ends at {size} links but a checkpoint covers {covered}: its last"
            f" {covered - size} link(s) were removed")))  # fmt: skip
    # One pass: the frontier gives the root of every prefix, compared with each checkpoint of that size.
    leaves, links = [], []
    frontier = CompactRange()
    by_size: dict[int, list[Checkpoint]] = {}
    for checkpoint in trusted:
        by_size.setdefault(checkpoint.size, []).append(checkpoint)
    consistent = True
    for index in range(max(size, covered) + 1):
        for checkpoint in by_size.get(index, []):
            if index > size or root_text(frontier.root()) != checkpoint.root:
                consistent = False
                problems.append(ChainBreak(seq=0, finding="root_mismatch", collector_id=collector_id, problem=(
                    f"log {collector_id}'s first {checkpoint.size} links do not give the root of its checkpoint"
                    f" at {rfc3339_nanos(checkpoint.time_ns)}: links were removed, inserted or rewritten"
                )))  # fmt: skip
        if index < size:
            link = by_index[index][0][0] if index in by_index else ""
            leaf = leaf_hash(link)
            frontier.append(leaf)
            leaves.append(leaf)
            links.append(link)
    status = LogStatus(
        collector_id=collector_id,
        size=size,
        checkpoint_size=latest.size if latest else 0,
        checkpoint_root=latest.root if latest else "",
        checkpoint_time=rfc3339_nanos(latest.time_ns) if latest else "",
        consistent=consistent and not missing and size >= covered,
        links_after_checkpoint=max(0, size - (latest.size if latest else 0)),
        problems=problems,
    )
    return CheckedLog(status, leaves, links, latest)


def _indices(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:10])
    return f"index {shown}" if len(indices) == 1 else f"indices {shown}" + (" …" if len(indices) > 10 else "")


def verify_logs(
    client: Client, tenant: str, public_key_pem: str | None = None, checkpoint_dir: Path | None = None
) -> LogVerification:
    """Every log of the tenant (in the table or named by a checkpoint) against every checkpoint."""
    checkpoints = load_checkpoints(client, tenant, checkpoint_dir)
    collectors = {str(row[0]) for row in client.query(queries.TENANT_LOGS, parameters={"tenant": tenant}).result_rows}
    collectors |= {c.collector_id for c in checkpoints}
    logs = [check_log(client, tenant, cid, checkpoints, public_key_pem).status for cid in sorted(collectors)]
    return LogVerification(tenant=tenant, status="consistent" if all(not log.problems for log in logs)
                           else "inconsistent", logs=logs)  # fmt: skip
