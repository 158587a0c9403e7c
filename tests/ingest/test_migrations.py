"""Versioned, idempotent migrations on a real chDB database."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from agentledger.ingest.clickhouse import connect
from agentledger.ingest.migrations import Migration, MigrationError, bundled_migrations, migrate
from tests.query_api.incidents import PR_URL, PrRun, ingest, pr_run_spans


def test_migrations_apply_once_and_then_are_a_no_op(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)

    first = migrate(client)
    second = migrate(client)

    assert [f"{m.version:04d}_{m.name}" for m in first][:2] == ["0001_initial", "0002_identity_and_dedup"]
    assert len(first) == len(bundled_migrations())
    assert second == []
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert {"spans", "runs", "runs_mv", "writes", "annotations", "schema_migrations"} <= tables
    assert {"refs", "run_facts", "run_facts_mv", "refs_write_ref_mv", "refs_span_target_mv"} <= tables
    client.close()


def test_an_applied_migration_that_changed_is_refused(client: Client) -> None:
    original = bundled_migrations()[0]
    edited = Migration(original.version, original.name, original.sql + "\n-- edited\n")

    with pytest.raises(MigrationError) as error:
        migrate(client, [edited])

    assert "0001_initial changed after it was applied" in str(error.value)


def test_statements_are_idempotent_when_rerun_after_an_interruption(client: Client) -> None:
    for statement in bundled_migrations()[0].statements():
        client.command(statement)

    assert int(client.command("SELECT count() FROM spans")) == 0


def test_lookups_migration_backfills_rows_stored_before_it(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)
    initial = [m for m in bundled_migrations() if m.name != "lookups"]
    migrate(client, initial)
    ingest(client, pr_run_spans(PrRun("run_before")))
    client.command(
        "INSERT INTO writes (tenant, run_id, system, ref, action, target, occurred_at, source)"
        " VALUES ('default', 'run_before', 'jira', 'OPS-17', 'update', 'jira:project/OPS', now64(9), 'api')"
    )

    migrate(client)

    refs = client.query("SELECT kind, value, source, name FROM refs FINAL ORDER BY kind, value, source, name")
    assert refs.result_rows == [
        ("target", "github:acme/shop", "span", "execute_tool create_pull_request"),
        ("target", "github:acme/shop", "span", "write github"),
        ("target", "jira:project/OPS", "span", "execute_tool update_ticket"),
        ("target", "jira:project/OPS", "write", "jira update"),
        ("write_ref", "OPS-17", "write", "jira update"),
        ("write_ref", PR_URL, "span", "write github"),
    ]
    facts = client.query(
        "SELECT run_id, groupUniqArrayArray(tools), max(autonomy_level) FROM run_facts GROUP BY run_id"
    )
    assert [(run, sorted(tools), level) for run, tools, level in facts.result_rows] == [
        ("run_before", ["create_pull_request", "update_ticket"], "approve_writes")
    ]
    client.close()


def test_spans_merge_column_by_column_from_the_first_row(client: Client) -> None:
    """Migration 0015: ClickHouse's vertical merge for spans at any size (its default starts at 131,072 rows)."""
    rows = client.query(
        "SELECT extract(create_table_query, 'vertical_merge_algorithm_min_rows_to_activate = (\\\\d+)')"
        " FROM system.tables WHERE database = currentDatabase() AND name = 'spans'"
    ).result_rows

    assert rows == [("1",)]
