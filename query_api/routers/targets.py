"""Targets: every run that touched a resource (customer, record, repository), by tool call or write."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agentledger.query_api import queries
from agentledger.query_api.auth import AUTH_RESPONSES, Reader
from agentledger.query_api.dependencies import ClientDep
from agentledger.query_api.models import TargetRuns, TargetTouch
from agentledger.query_api.times import rfc3339_nanos

router = APIRouter(prefix="/v1/targets", tags=["targets"])


@router.get("/{resource:text}", responses={**AUTH_RESPONSES})
def get_target(
    caller: Reader,
    client: ClientDep,
    resource: Annotated[
        str,
        Path(min_length=1, max_length=2048, description="The agentledger.tool.target value, e.g. crm:customer/C-1."),
    ],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TargetRuns:
    """Every span and downstream write that names this target, newest first."""
    rows = client.query(
        queries.TARGET_TOUCHES, parameters={"tenant": caller.tenant, "target": resource, "limit": limit}
    ).named_results()
    return TargetRuns(
        target=resource,
        touches=[
            TargetTouch(
                run_id=row["run_id"],
                kind="write" if row["source"] == "write" else "span",
                name=row["name"],
                tool_call_id=row["tool_call_id"],
                write_ref=row["write_ref"],
                span_id=row["span_id"],
                time=rfc3339_nanos(int(row["at_ns"])),
            )
            for row in rows
        ],
    )
