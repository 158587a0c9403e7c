"""Applies the versioned DDL in schema/migrations/NNNN_name.sql, once each, recording them in schema_migrations.

Every statement is idempotent (IF NOT EXISTS), so a migration interrupted half-way is simply re-run. The
files are written for one node; `DdlShape(cluster=...)` applies the cluster shape generated from them
(ingest/cluster_ddl.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from agentledger.ingest.cluster_ddl import LEDGER_TABLE, ClusterDdlError, DdlShape, ledger_ddl, shape_migrations

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is malformed or was changed after it was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        without_comments = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


def bundled_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("agentledger.schema").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file {entry.name} must be named NNNN_name.sql")
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


def applied_versions(client: Client, shape: DdlShape | None = None) -> dict[int, str]:
    shape = shape or DdlShape(client.database or "default")
    _refuse_other_shape(client, shape)
    client.command(ledger_ddl(shape))
    rows = client.query(f"SELECT version, argMax(checksum, applied_at) FROM {LEDGER_TABLE} GROUP BY version")
    return {int(version): str(checksum) for version, checksum in rows.result_rows}


def _refuse_other_shape(client: Client, shape: DdlShape) -> None:
    """A database migrated in one shape never gets statements of the other (local tables beside
    Distributed ones of the same name would split the record)."""
    rows = client.query(
        "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = {table:String}",
        parameters={"table": LEDGER_TABLE},
    ).result_rows
    if not rows:
        return
    clustered = str(rows[0][0]).startswith("Replicated")
    if clustered != (shape.cluster is not None):
        existing = "a cluster" if clustered else "a single node"
        wanted = f"cluster {shape.cluster}" if shape.cluster is not None else "a single node"
        raise MigrationError(
            f"database {client.database} was migrated for {existing}; refusing to apply the DDL for {wanted}"
            " (storage.cluster must match how the database was created)"
        )


def planned_statements(shape: DdlShape, migrations: list[Migration] | None = None) -> list[tuple[Migration, list[str]]]:
    """Each migration with its statements in `shape`, in order."""
    pending = bundled_migrations() if migrations is None else migrations
    try:
        shaped = shape_migrations([migration.statements() for migration in pending], shape)
    except ClusterDdlError as error:
        raise MigrationError(str(error)) from error
    return list(zip(pending, shaped, strict=True))


def migrate(
    client: Client, migrations: list[Migration] | None = None, shape: DdlShape | None = None
) -> list[Migration]:
    """Applies pending migrations in order (in `shape`, default one node); returns those applied now."""
    shape = shape or DdlShape(client.database or "default")
    applied = applied_versions(client, shape)
    done = []
    for migration, statements in planned_statements(shape, migrations):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied;"
                    " add a new migration instead of editing an applied one"
                )
            continue
        for statement in statements:
            client.command(statement)
        client.insert(
            LEDGER_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration)
    return done
