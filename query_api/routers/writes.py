"""Downstream writes: reported by the systems written to (generic JSON), and looked up by reference."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentledger.query_api.audit import link_write
from agentledger.query_api.auth import AUTH_RESPONSES, Admin, Reader
from agentledger.query_api.dependencies import ClientDep
from agentledger.query_api.models import Accepted, LinkedWrite, WriteLookup, WriteRecord, WritesIn
from agentledger.query_api.store import runs as run_store
from agentledger.query_api.times import rfc3339_nanos
from agentledger.query_api.writes import NewWrite, insert_writes

router = APIRouter(prefix="/v1/writes", tags=["writes"])

# A reference written by more runs than this is listed by its newest runs only.
MAX_LOOKUP_RUNS = 20


@router.post(
    "",
    status_code=202,
    responses={
        **AUTH_RESPONSES,
    },
)
def post_writes(body: WritesIn, caller: Admin, client: ClientDep) -> Accepted:
    """Stores downstream writes under the caller's tenant. Each must carry the run id the object carries."""
    stored = insert_writes(client, caller.tenant, [NewWrite.from_api(write, "api") for write in body.writes])
    return Accepted(accepted=stored)


@router.get("", responses={**AUTH_RESPONSES})
def lookup_write(
    caller: Reader,
    client: ClientDep,
    ref: Annotated[str, Query(min_length=1, max_length=2048, description="PR URL, ticket key, CRM id, ...")],
) -> WriteLookup:
    """Reverse lookup: the runs that wrote this reference and the exact tool call that wrote it."""
    # One read whatever the number of runs (it finds the runs in the refs table itself): their writes of the
    # ref, where their spans are, and their spans without content (linking reads no content).
    found = run_store.load_ref_lookup(client, caller.tenant, ref, MAX_LOOKUP_RUNS)
    reported, locations, spans_of = found.writes, found.locations, found.spans
    # A run with neither a reported write nor an index row has nothing to show.
    run_ids = sorted(set(reported) | {location.run_id for location in locations})
    matches: list[LinkedWrite] = []
    for run_id in run_ids:
        writes = reported.get(run_id, [])
        spans = spans_of.get(run_id, [])
        if not writes:
            # Only the agent's own write span names the ref: no system has confirmed the write yet.
            writes = [
                WriteRecord(
                    run_id=run_id,
                    system=span.write_system,
                    ref=ref,
                    action="",
                    target=span.target,
                    occurred_at=rfc3339_nanos(span.start_ns),
                    occurred_unix_nano=span.start_ns,
                    tool_call_id="",
                    source="span",
                    title="",
                    url="",
                    actor="",
                )
                for span in spans
                if span.entry_type == "downstream_write" and span.write_ref == ref
            ][:1]
        matches.extend(LinkedWrite(write=write, tool_call=link_write(write, spans)) for write in writes)
    matches.sort(key=lambda m: (-m.write.occurred_unix_nano, m.write.run_id))
    return WriteLookup(ref=ref, matches=matches)
