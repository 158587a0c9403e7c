"""Legal holds and deletion on request: holds keep runs or agents' spans past retention, and a deletion
first writes a tombstone into the run's audit chain, so the run verifies as deleted, not as tampered."""

from __future__ import annotations

import time
import uuid
from typing import Any

from clickhouse_connect.driver.client import Client

from agentledger.ingest.audit_chain import ChainWriter, span_digest, span_key
from agentledger.ingest.cluster_ddl import DdlShape, cluster_mutation
from agentledger.query_api import queries
from agentledger.query_api.models import Deletion, Hold, HoldScope
from agentledger.query_api.times import rfc3339_nanos

_SYNC = {"mutations_sync": 2}


class HoldActive(Exception):
    """The run is under a legal hold; the message names the hold."""


def _hold(row: dict[str, Any], released: bool = False) -> Hold:
    return Hold(
        hold_id=str(row["hold_id"]),
        scope=str(row["scope"]),
        target=str(row["target"]),
        reason=str(row["reason"]),
        placed_by=str(row["placed_by"]),
        placed_at=rfc3339_nanos(int(row["placed_ns"])),
        released=released,
    )


def active_holds(client: Client, tenant: str) -> list[Hold]:
    return [_hold(row) for row in client.query(queries.ACTIVE_HOLDS, parameters={"tenant": tenant}).named_results()]


def _mutation(statement: str, shape: DdlShape | None) -> str:
    # A Distributed table takes no ALTER ... UPDATE/DELETE: on a cluster the mutation runs on every node's
    # local table (ingest/cluster_ddl.py); on one node the statement is as written.
    return statement if shape is None else cluster_mutation(statement, shape)


def place_hold(
    client: Client,
    tenant: str,
    scope: HoldScope,
    target: str,
    reason: str,
    placed_by: str,
    shape: DdlShape | None = None,
) -> Hold:
    hold_id = f"hold_{uuid.uuid4().hex[:16]}"
    now = time.time_ns()
    client.insert(
        "legal_holds",
        [[tenant, hold_id, scope, target, reason, placed_by, now, None, now]],
        column_names=["tenant", "hold_id", "scope", "target", "reason", "placed_by", "placed_at", "released_at",
                      "version"],
    )  # fmt: skip
    statements = (
        (queries.HOLD_RUN_SPANS, queries.HOLD_RUN_SPAN_TOKENS)
        if scope == "run"
        else (queries.HOLD_AGENT_SPANS, queries.HOLD_AGENT_SPAN_TOKENS)
    )
    for statement in statements:
        client.command(_mutation(statement, shape), parameters={"tenant": tenant, "target": target}, settings=_SYNC)
    return Hold(hold_id=hold_id, scope=scope, target=target, reason=reason, placed_by=placed_by,
                placed_at=rfc3339_nanos(now), released=False)  # fmt: skip


def release_hold(client: Client, tenant: str, hold_id: str, shape: DdlShape | None = None) -> Hold | None:
    rows = list(client.query(queries.HOLD_BY_ID, parameters={"tenant": tenant, "hold_id": hold_id}).named_results())
    if not rows:
        return None
    row = rows[0]
    if not row["released"]:
        now = time.time_ns()
        client.insert(
            "legal_holds",
            [[tenant, hold_id, row["scope"], row["target"], row["reason"], row["placed_by"], int(row["placed_ns"]),
              now, now]],
            column_names=["tenant", "hold_id", "scope", "target", "reason", "placed_by", "placed_at", "released_at",
                          "version"],
        )  # fmt: skip
        for statement in (queries.RELEASE_SPANS, queries.RELEASE_SPAN_TOKENS):
            client.command(_mutation(statement, shape), parameters={"tenant": tenant},
                           settings={**_SYNC, "allow_nondeterministic_mutations": 1})  # fmt: skip
    return _hold(row, released=True)


def holds_covering_run(client: Client, tenant: str, run_id: str) -> list[Hold]:
    agents: set[str] = set()
    for agent_id, verified in client.query(
        queries.RUN_AGENTS, parameters={"tenant": tenant, "run_id": run_id}
    ).result_rows:
        agents.update(a for a in (agent_id, verified) if a)
    return [h for h in active_holds(client, tenant)
            if (h.scope == "run" and h.target == run_id) or (h.scope == "agent" and h.target in agents)]  # fmt: skip


def delete_run(
    client: Client,
    chain: ChainWriter,
    tenant: str,
    run_id: str,
    requested_by: str,
    reason: str,
    shape: DdlShape | None = None,
) -> Deletion | None:
    """Deletes the run's spans and every row derived from them after chaining a tombstone into the query
    API's own log (signed and checkpointed like any link); None when there is no such run.

    Raises HoldActive when a legal hold covers the run.
    """
    holds = holds_covering_run(client, tenant, run_id)
    if holds:
        hold = holds[0]
        raise HoldActive(f"run {run_id!r} is under legal hold {hold.hold_id} ({hold.scope} {hold.target}:"
                         f" {hold.reason}); release it first")  # fmt: skip
    parameters = {"tenant": tenant, "run_id": run_id}
    deleted = sorted(
        {(span_key(row["trace_id"], row["span_id"]), span_digest(row))
         for row in client.query(queries.RUN_OWN_SPANS_FOR_DIGEST, parameters=parameters).named_results()}
    )  # fmt: skip
    if not deleted:
        return None
    note = f"deleted on request of {requested_by}: {reason}"
    links = chain.append(chain.tombstone_for(tenant, run_id, deleted, time.time_ns(), note))
    # Derived rows first, spans last: if a step fails, the spans are still there and a retry finds the run.
    for statement in queries.DELETE_RUN_DERIVED:
        client.command(_mutation(statement, shape), parameters=parameters, settings=_SYNC)
    client.command(_mutation(queries.DELETE_RUN_SPANS, shape), parameters=parameters, settings=_SYNC)
    return Deletion(run_id=run_id, deleted_spans=len(deleted), tombstone_seq=links[0].seq, note=note)
