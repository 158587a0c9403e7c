"""Downstream writes: storing the ones reported (API, webhooks, imports) and reading a run's back.

Inserted as Arrow columns so occurred_at keeps its nanoseconds (a bound datetime would lose them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from agentledger.query_api import queries
from agentledger.query_api.models import WriteIn, WriteRecord
from agentledger.query_api.times import parse_rfc3339_ns, rfc3339_nanos

WRITES_TABLE: Final = "writes"

_WRITES_SCHEMA: Final = pa.schema(
    [pa.field(name, pa.string(), nullable=False) for name in ("tenant", "run_id", "system", "ref", "action", "target")]
    + [pa.field("occurred_at", pa.timestamp("ns"), nullable=False)]
    + [
        pa.field(name, pa.string(), nullable=False)
        for name in ("tool_call_id", "source", "title", "url", "actor", "payload")
    ]
)


@dataclass(frozen=True)
class NewWrite:
    """A write ready to store: everything resolved, times in Unix nanoseconds."""

    run_id: str
    system: str
    ref: str
    action: str
    target: str
    occurred_ns: int
    source: str
    tool_call_id: str = ""
    title: str = ""
    url: str = ""
    actor: str = ""
    payload: str = ""

    @classmethod
    def from_api(cls, write: WriteIn, source: str) -> NewWrite:
        return cls(
            run_id=write.run_id,
            system=write.system,
            ref=write.ref,
            action=write.action,
            target=write.target,
            occurred_ns=parse_rfc3339_ns(write.occurred_at),
            source=source,
            tool_call_id=write.tool_call_id or "",
            title=write.title or "",
            url=write.url or "",
            actor=write.actor or "",
            payload=write.model_dump_json(exclude_none=True),
        )


def insert_writes(client: Client, tenant: str, writes: Sequence[NewWrite]) -> int:
    if not writes:
        return 0
    columns: dict[str, list[object]] = {name: [] for name in _WRITES_SCHEMA.names}
    for write in writes:
        columns["tenant"].append(tenant)
        columns["occurred_at"].append(write.occurred_ns)
        for name in ("run_id", "system", "ref", "action", "target", "tool_call_id", "source", "title", "url"):
            columns[name].append(getattr(write, name))
        columns["actor"].append(write.actor)
        columns["payload"].append(write.payload)
    table = pa.table({name: pa.array(values, _WRITES_SCHEMA.field(name).type) for name, values in columns.items()})
    client.insert_arrow(WRITES_TABLE, table.cast(_WRITES_SCHEMA))
    return len(writes)


def record_of(row: dict[str, object]) -> WriteRecord:
    occurred_ns = int(str(row["occurred_ns"]))
    return WriteRecord(
        run_id=str(row["run_id"]),
        system=str(row["system"]),
        ref=str(row["ref"]),
        action=str(row["action"]),
        target=str(row["target"]),
        occurred_at=rfc3339_nanos(occurred_ns),
        occurred_unix_nano=occurred_ns,
        tool_call_id=str(row["tool_call_id"]),
        source=str(row["source"]),
        title=str(row["title"]),
        url=str(row["url"]),
        actor=str(row["actor"]),
    )


def distinct_writes(rows: Iterable[dict[str, object]]) -> list[WriteRecord]:
    """Rows of RUN_WRITES / RUNS_WRITES as records: of the copies of a write (same run, system, ref and
    occurrence: a redelivered webhook) the newest received, ordered by (run, occurrence, system, ref)."""
    newest: dict[tuple[str, str, str, int], dict[str, object]] = {}
    for row in rows:
        key = (str(row["run_id"]), str(row["system"]), str(row["ref"]), int(str(row["occurred_ns"])))
        kept = newest.get(key)
        if kept is None or int(str(row["received_ns"])) > int(str(kept["received_ns"])):
            newest[key] = row
    return [record_of(newest[key]) for key in sorted(newest, key=lambda key: (key[0], key[3], key[1], key[2]))]


def load_run_writes(client: Client, tenant: str, run_id: str) -> list[WriteRecord]:
    """The run's writes in time order; a write reported twice (webhook redelivery) appears once."""
    result = client.query(queries.RUN_WRITES, parameters={"tenant": tenant, "run_id": run_id})
    return distinct_writes(result.named_results())
