"""Opens clickhouse-connect clients for a DSN: `chdb:///path` (embedded, the default) or `http(s)://host:8123`.

The same code and DDL serve both; only the DSN differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.ingest.cluster_ddl import CLUSTER_CLIENT_SETTINGS, DdlShape, create_database_ddl

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class StorageUnavailable(RuntimeError):
    """ClickHouse could not be reached or opened; the message says which DSN and why."""


def chdb_dsn(data_dir: Path) -> str:
    return f"chdb:///{data_dir.resolve().as_posix().lstrip('/')}"


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def connect(
    dsn: str, database: str, cluster: str | None = None, embedded_settings: Mapping[str, str] | None = None
) -> Client:
    """Returns a client bound to `database`, creating the database first if needed (on every node of
    `cluster`, whose client settings it then carries: ingest/cluster_ddl.py). `embedded_settings`: chDB
    server settings (storage.embedded), applied by whichever client starts the process's engine.

    Embedded (chDB) clients on one path share one engine, so the short-lived bootstrap client is safe
    to close.
    """
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"database name {database!r} must be a plain identifier (letters, digits, _)")
    if is_embedded(dsn):
        if cluster is not None:
            raise StorageUnavailable(
                f"storage.cluster ({cluster}) needs a ClickHouse server DSN (http://host:8123), not"
                f" {redact_dsn(dsn)}: embedded chDB is a single node"
            )
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    try:
        shape = DdlShape(database, cluster)
        bootstrap = _open(dsn, "", shape, embedded_settings)
        try:
            bootstrap.command(create_database_ddl(shape))
        finally:
            bootstrap.close()
        return _open(dsn, database, shape, embedded_settings)
    except ClickHouseError as error:
        raise StorageUnavailable(f"cannot open ClickHouse at {redact_dsn(dsn)}: {first_line(error)}") from error
    except OSError as error:
        raise StorageUnavailable(f"cannot reach ClickHouse at {redact_dsn(dsn)}: {error}") from error


def _open(dsn: str, database: str, shape: DdlShape, embedded_settings: Mapping[str, str] | None = None) -> Client:
    if is_embedded(dsn):
        # chDB passes connection-string options naming server settings to the engine as start-up options.
        return clickhouse_connect.get_client(dsn=dsn, database=database, chdb_options=dict(embedded_settings or {}))
    settings = dict(CLUSTER_CLIENT_SETTINGS) if shape.cluster is not None else {}
    # Without a session id, threads can share one HTTP client (ClickHouse refuses concurrent queries
    # in one session); chDB has no sessions to turn off.
    return clickhouse_connect.get_client(dsn=dsn, database=database, autogenerate_session_id=False, settings=settings)


def redact_dsn(dsn: str) -> str:
    """The DSN without a password, for messages and logs."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1****@", dsn)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def tracked_memory_bytes(client: Client) -> float:
    """ClickHouse's MemoryTracking: what the server (embedded chDB: this process) accounts to queries, merges
    and caches."""
    rows = client.query("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'").result_rows
    return float(rows[0][0]) if rows else 0.0
