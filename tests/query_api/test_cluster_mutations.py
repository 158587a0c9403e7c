"""Legal holds and deletions on a cluster: a Distributed table takes no ALTER ... UPDATE/DELETE, so the query
API sends each mutation to every node's local table (ON CLUSTER). No cluster runs here: the statements go
through ClickHouse's own parser, and a hold placed with a cluster shape on chDB reaches ClickHouse as the
cluster statement (which chDB, running no distributed DDL, refuses as such)."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from agentledger.ingest.cluster_ddl import DdlShape
from agentledger.query_api import queries
from agentledger.query_api.holds import _mutation, active_holds, place_hold, release_hold

SHAPE = DdlShape("agentledger", "agentledger_cluster")
MUTATIONS = (queries.HOLD_RUN_SPANS, queries.HOLD_AGENT_SPANS, queries.RELEASE_SPANS, queries.DELETE_RUN_SPANS,
             *queries.DELETE_RUN_DERIVED)  # fmt: skip


@pytest.mark.parametrize("statement", MUTATIONS)
def test_each_hold_and_deletion_mutation_runs_on_the_local_tables_of_every_node(
    client: Client, statement: str
) -> None:
    shaped = _mutation(statement, SHAPE)
    table = statement.split()[2]
    formatted = client.query("SELECT formatQuery({q:String})", parameters={"q": shaped}).result_rows[0][0]
    assert formatted.split(None, 5)[:5] == ["ALTER", "TABLE", f"{table}_local", "ON", "CLUSTER"]
    assert formatted.split(None, 6)[5] == "agentledger_cluster"
    assert _mutation(statement, None) == statement


def test_a_hold_with_the_cluster_shape_reaches_clickhouse_as_the_cluster_statement(client: Client) -> None:
    with pytest.raises(DatabaseError) as raised:
        place_hold(client, "default", "run", "run_1", "litigation", "admin", SHAPE)
    # chDB runs no distributed DDL: refusing the statement as one shows it went out ON CLUSTER.
    assert "Replicated DDL queries are disabled" in str(raised.value)
    # Without a shape the same hold is placed and released on this one node.
    hold = place_hold(client, "default", "run", "run_1", "litigation", "admin")
    assert hold.hold_id in [h.hold_id for h in active_holds(client, "default")]
    released = release_hold(client, "default", hold.hold_id)
    assert released is not None and released.released
