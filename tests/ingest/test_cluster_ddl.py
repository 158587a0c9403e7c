"""The DDL shapes of the migrations: every statement of both goes through ClickHouse's own parser (chDB's
formatQuery), the single-node shape runs on chDB, and the cluster shape has the structure a 2x2 cluster needs.

No ClickHouse server can run here, so the cluster shape is checked by parsing, not by applying it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from clickhouse_connect.driver.client import Client

from agentledger.ingest.clickhouse import StorageUnavailable, connect
from agentledger.ingest.cluster_ddl import (
    CLUSTER_CLIENT_SETTINGS,
    ClusterDdlError,
    DdlShape,
    cluster_mutation,
    create_database_ddl,
    ledger_ddl,
    shape_migrations,
)
from agentledger.ingest.migrations import Migration, MigrationError, bundled_migrations, migrate, planned_statements

CLUSTER = "agentledger_2x2"
DATABASE = "agentledger"


def _parsed(client: Client, statement: str) -> str:
    """ClickHouse's canonical text of `statement`; the statement is a query parameter, since chDB would
    read the `{shard}` / `{replica}` macros inside it as parameters of its own."""
    result = client.query("SELECT formatQuery({statement:String})", parameters={"statement": statement})
    return str(result.result_rows[0][0])


def _engines(client: Client) -> dict[str, str]:
    rows = client.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").result_rows
    return {str(name): str(engine) for name, engine in rows}


def _script(shape: DdlShape) -> list[str]:
    return [create_database_ddl(shape), ledger_ddl(shape)] + [
        statement for _, statements in planned_statements(shape) for statement in statements
    ]


def _printed_statements(script: str) -> list[str]:
    """The statements of a `migrate --print` script, without its `-- title` lines."""
    without_titles = "".join(line for line in script.splitlines(keepends=True) if not line.startswith("-- "))
    return [statement.strip() for statement in without_titles.split(";\n") if statement.strip()]


def _one_line(statement: str) -> str:
    return " ".join(statement.split())


@pytest.mark.parametrize("cluster", [None, CLUSTER], ids=["single-node", "cluster"])
def test_every_statement_of_both_shapes_parses_in_clickhouse(client: Client, cluster: str | None) -> None:
    script = _script(DdlShape(DATABASE, cluster))

    formatted = [_parsed(client, statement) for statement in script]

    assert len(formatted) == len(script)
    if cluster is not None:
        # Everything but the backfills (INSERT ... SELECT through the Distributed tables) runs on every node.
        assert [s for s in formatted if not s.startswith("INSERT") and f"ON CLUSTER {cluster}" not in s] == []


def test_the_single_node_shape_is_the_migration_files_as_written() -> None:
    shaped = planned_statements(DdlShape(DATABASE))

    assert [statements for _, statements in shaped] == [m.statements() for m in bundled_migrations()]
    ledger = _one_line(ledger_ddl(DdlShape(DATABASE)))
    assert ledger.endswith("ENGINE = ReplacingMergeTree(applied_at) ORDER BY version")


def test_the_printed_single_node_script_builds_the_schema_on_chdb(engine_dsn: str, database: str) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "agentledger", "migrate", "--print", "--database", database],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    client = connect(engine_dsn, database)
    for statement in _printed_statements(printed.stdout):
        client.command(statement)

    tables = _engines(client)
    migrated = connect(engine_dsn, f"{database}_m")
    migrate(migrated)
    expected = _engines(migrated)
    migrated.command(f"DROP DATABASE `{database}_m` SYNC")
    assert tables == expected
    assert tables["spans"] == "ReplacingMergeTree" and tables["runs_mv"] == "MaterializedView"
    client.close()
    migrated.close()


_LOCAL_TABLE = re.compile(
    rf"CREATE TABLE IF NOT EXISTS (\w+)_local ON CLUSTER {CLUSTER}\n.*ENGINE = (Replicated\w+)\("
    r"'/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'",
    re.S,
)
_DISTRIBUTED_TABLE = re.compile(
    rf"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER {CLUSTER} AS \1_local\s+"
    rf"ENGINE = Distributed\('{CLUSTER}', '{DATABASE}', '\1_local', (.+)\)$",
    re.S,
)
_VIEW = re.compile(
    rf"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) ON CLUSTER {CLUSTER} TO (\w+)\s+AS .*?FROM (\w+)", re.S
)


def test_the_cluster_shape_pairs_each_table_with_a_replicated_local_and_a_distributed_table(client: Client) -> None:
    single = _script(DdlShape(DATABASE))
    cluster = [_parsed(client, statement) for statement in _script(DdlShape(DATABASE, CLUSTER))]
    created = [m.group(1) for s in single if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\(", s))]
    single_tables = sorted(name for name in created if name != "schema_migrations")
    local = {m.group(1): m.group(2) for s in cluster if (m := _LOCAL_TABLE.match(s))}
    distributed = {m.group(1): m.group(2) for s in cluster if (m := _DISTRIBUTED_TABLE.match(s))}

    assert sorted(local) == sorted(distributed) == single_tables
    assert local["spans"] == "ReplicatedReplacingMergeTree" and local["runs"] == "ReplicatedAggregatingMergeTree"
    assert local["audit_chain"] == "ReplicatedMergeTree"
    # A run's spans, links, index rows and writes on one shard; tables without a run by their own key.
    assert {name: key for name, key in distributed.items() if key != "cityHash64(tenant, run_id)"} == {
        "legal_holds": "cityHash64(tenant, hold_id)",
        "audit_checkpoints": "cityHash64(tenant, collector_id)",
        # read through the Distributed table, newest version across shards
        "tool_catalogues": "cityHash64(tenant, updated_at)",
    }
    assert not [s for s in cluster if "non_replicated_deduplication_window" in s]
    audit_chain = next(s for s in cluster if s.startswith("CREATE TABLE IF NOT EXISTS audit_chain_local"))
    assert "SETTINGS replicated_deduplication_window = 10000" in audit_chain


def test_cluster_materialized_views_read_and_fill_the_local_tables(client: Client) -> None:
    cluster = [_parsed(client, statement) for statement in _script(DdlShape(DATABASE, CLUSTER))]
    views = {m.group(1): (m.group(2), m.group(3)) for s in cluster if (m := _VIEW.match(s))}

    assert views == {
        "runs_mv": ("runs_local", "spans_local"),
        "refs_span_write_ref_mv": ("refs_local", "spans_local"),
        "refs_span_target_mv": ("refs_local", "spans_local"),
        "refs_write_ref_mv": ("refs_local", "writes_local"),
        "refs_write_target_mv": ("refs_local", "writes_local"),
        "run_facts_mv": ("run_facts_local", "spans_local"),
        "run_starts_mv": ("run_starts_local", "spans_local"),
        "span_tokens_mv": ("span_tokens_local", "spans_local"),
    }


def test_cluster_alters_follow_columns_to_both_tables_and_storage_to_the_local_one() -> None:
    by_version = {m.version: s for m, s in planned_statements(DdlShape(DATABASE, CLUSTER))}

    assert [_one_line(s) for s in by_version[7][:3]] == [
        f"ALTER TABLE spans_local ON CLUSTER `{CLUSTER}` ADD COLUMN IF NOT EXISTS retain_until DateTime DEFAULT"
        " toDateTime('2105-12-31 00:00:00', 'UTC')",
        f"ALTER TABLE spans ON CLUSTER `{CLUSTER}` ADD COLUMN IF NOT EXISTS retain_until DateTime DEFAULT"
        " toDateTime('2105-12-31 00:00:00', 'UTC')",
        f"ALTER TABLE spans_local ON CLUSTER `{CLUSTER}` ADD COLUMN IF NOT EXISTS legal_hold UInt8 DEFAULT 0",
    ]
    assert _one_line(by_version[7][4]) == (
        f"ALTER TABLE spans_local ON CLUSTER `{CLUSTER}` MODIFY TTL retain_until DELETE WHERE legal_hold = 0"
    )
    assert [_one_line(s) for s in by_version[2][-2:]] == [
        f"ALTER TABLE spans_local ON CLUSTER `{CLUSTER}` MODIFY SETTING replicated_deduplication_window = 10000",
        f"ALTER TABLE runs_local ON CLUSTER `{CLUSTER}` MODIFY SETTING replicated_deduplication_window = 10000",
    ]
    # Backfills stay as written: through the Distributed tables they land on the shards the key picks.
    assert by_version[3][-1] == bundled_migrations()[2].statements()[-1]


def test_the_cluster_ledger_is_one_table_every_node_replicates(client: Client) -> None:
    formatted = _parsed(client, ledger_ddl(DdlShape(DATABASE, CLUSTER)))

    assert _one_line(formatted) == (
        f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {CLUSTER} ( `version` UInt32, `name` String,"
        " `checksum` String, `applied_at` DateTime64(9) DEFAULT now64(9) ) ENGINE ="
        " ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}', applied_at)"
        " ORDER BY version"
    )


def test_a_later_migration_gets_the_cluster_shape_too(client: Client) -> None:
    # What a future migration may hold: a table without run_id, an index, a column, a view, a drop.
    later = [
        "CREATE TABLE IF NOT EXISTS tool_catalogue (tenant LowCardinality(String), tool String, risk String,"
        " version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, tool)",
        "ALTER TABLE spans ADD INDEX IF NOT EXISTS idx_tool tool_name TYPE set(100) GRANULARITY 4",
        "ALTER TABLE tool_catalogue ADD COLUMN IF NOT EXISTS owner String, ADD COLUMN IF NOT EXISTS note String",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS tool_mv TO tool_catalogue AS SELECT tenant,"
        " toString(tool_name) AS tool, '' AS risk, toUInt64(1) AS version FROM spans"
        " INNER JOIN runs USING (tenant, run_id) WHERE tool_name != ''",
        "DROP TABLE IF EXISTS tool_catalogue",
    ]
    shaped = shape_migrations([m.statements() for m in bundled_migrations()] + [later], DdlShape(DATABASE, CLUSTER))[-1]

    assert [_one_line(_parsed(client, s)) for s in shaped] == [
        f"CREATE TABLE IF NOT EXISTS tool_catalogue_local ON CLUSTER {CLUSTER} ( `tenant` LowCardinality(String),"
        " `tool` String, `risk` String, `version` UInt64 ) ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version) ORDER BY (tenant, tool)",
        f"CREATE TABLE IF NOT EXISTS tool_catalogue ON CLUSTER {CLUSTER} AS tool_catalogue_local ENGINE ="
        f" Distributed('{CLUSTER}', '{DATABASE}', 'tool_catalogue_local', cityHash64(tenant, tool))",
        f"ALTER TABLE spans_local ON CLUSTER {CLUSTER} (ADD INDEX IF NOT EXISTS idx_tool tool_name TYPE set(100)"
        " GRANULARITY 4)",
        f"ALTER TABLE tool_catalogue_local ON CLUSTER {CLUSTER} (ADD COLUMN IF NOT EXISTS `owner` String),"
        " (ADD COLUMN IF NOT EXISTS `note` String)",
        f"ALTER TABLE tool_catalogue ON CLUSTER {CLUSTER} (ADD COLUMN IF NOT EXISTS `owner` String),"
        " (ADD COLUMN IF NOT EXISTS `note` String)",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS tool_mv ON CLUSTER {CLUSTER} TO tool_catalogue_local AS SELECT"
        " tenant, toString(tool_name) AS tool, '' AS risk, toUInt64(1) AS version FROM spans_local INNER JOIN"
        " runs_local USING (tenant, run_id) WHERE tool_name != ''",
        f"DROP TABLE IF EXISTS tool_catalogue ON CLUSTER {CLUSTER} SYNC",
        f"DROP TABLE IF EXISTS tool_catalogue_local ON CLUSTER {CLUSTER} SYNC",
    ]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("CREATE DICTIONARY IF NOT EXISTS d (k UInt64) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
         "no cluster shape for the statement 'CREATE DICTIONARY IF NOT EXISTS d"),
        ("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory",
         "table t: only *MergeTree tables have a cluster shape"),
        ("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = ReplicatedMergeTree ORDER BY a",
         "table t: write the single-node engine; the cluster shape adds Replicated"),
        ("ALTER TABLE spans ADD COLUMN IF NOT EXISTS x String, MODIFY TTL retain_until",
         "ALTER TABLE spans: no cluster shape for"),
        ("ALTER TABLE nowhere ADD COLUMN x String", "ALTER TABLE nowhere: not a table the migrations create"),
        ("CREATE MATERIALIZED VIEW IF NOT EXISTS v TO nowhere AS SELECT 1 FROM spans",
         "materialized view v: its target nowhere is not a table the migrations create"),
    ],
)  # fmt: skip
def test_a_statement_without_a_cluster_shape_is_refused_by_name(statement: str, message: str) -> None:
    migrations = [*bundled_migrations(), Migration(99, "later", statement + ";\n")]

    with pytest.raises(MigrationError) as error:
        planned_statements(DdlShape(DATABASE, CLUSTER), migrations)

    assert str(error.value).startswith(message)
    # The single-node shape takes the file as written.
    assert planned_statements(DdlShape(DATABASE), migrations)[-1][1] == [statement]


def test_a_bad_cluster_name_is_refused_with_a_sentence() -> None:
    with pytest.raises(ClusterDdlError) as error:
        DdlShape(DATABASE, "two words")

    assert str(error.value) == (
        "storage.cluster must be a cluster name from remote_servers (letters, digits, _ and -), not 'two words'"
    )


def test_mutations_run_on_every_nodes_local_table(client: Client) -> None:
    statement = "ALTER TABLE spans UPDATE legal_hold = 1 WHERE tenant = {tenant:String} AND run_id = {target:String}"

    shaped = cluster_mutation(statement, DdlShape(DATABASE, CLUSTER))

    assert shaped == (f"ALTER TABLE spans_local ON CLUSTER `{CLUSTER}` UPDATE legal_hold = 1 WHERE tenant ="
                      " {tenant:String} AND run_id = {target:String}")  # fmt: skip
    assert _one_line(_parsed(client, shaped)) == (
        f"ALTER TABLE spans_local ON CLUSTER {CLUSTER} (UPDATE legal_hold = 1 WHERE (tenant = {{tenant:String}})"
        " AND (run_id = {target:String}))"
    )
    assert cluster_mutation(statement, DdlShape(DATABASE)) == statement


def test_the_cluster_client_settings_are_settings_of_this_clickhouse(client: Client) -> None:
    known = client.query(
        "SELECT name FROM system.settings WHERE name IN {names:Array(String)}",
        parameters={"names": list(CLUSTER_CLIENT_SETTINGS)},
    ).result_rows

    assert sorted(row[0] for row in known) == sorted(CLUSTER_CLIENT_SETTINGS)


def test_a_database_migrated_for_one_node_refuses_the_cluster_shape(client: Client) -> None:
    tables_before = _engines(client)

    with pytest.raises(MigrationError) as error:
        migrate(client, shape=DdlShape(client.database or "", CLUSTER))

    assert str(error.value) == (
        f"database {client.database} was migrated for a single node; refusing to apply the DDL for cluster"
        f" {CLUSTER} (storage.cluster must match how the database was created)"
    )
    assert _engines(client) == tables_before


def test_a_cluster_on_embedded_chdb_is_refused(engine_dsn: str, database: str) -> None:
    with pytest.raises(StorageUnavailable) as error:
        connect(engine_dsn, database, CLUSTER)

    assert str(error.value).startswith(f"storage.cluster ({CLUSTER}) needs a ClickHouse server DSN (http://host:8123)")


def test_migrate_print_cluster_prints_the_whole_cluster_script() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "agentledger", "migrate", "--print", "--cluster", CLUSTER],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert printed.returncode == 0, printed.stderr
    shape = DdlShape(DATABASE, CLUSTER)
    expected = [create_database_ddl(shape), f"USE `{DATABASE}`", ledger_ddl(shape)]
    expected += [s.strip() for _, statements in planned_statements(shape) for s in statements]
    assert _printed_statements(printed.stdout) == expected
    assert printed.stdout.startswith(f"-- agentledger schema for cluster {CLUSTER}, database {DATABASE}\n")


def test_migrate_print_refuses_a_bad_cluster_name_with_exit_code_2() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "agentledger", "migrate", "--print", "--cluster", "no spaces"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert printed.returncode == 2
    assert printed.stderr.startswith("agentledger migrate: storage.cluster: ")
    assert "must be a cluster name from remote_servers" in printed.stderr
    assert "Traceback" not in printed.stderr
