"""Opens clickhouse-connect clients for a DSN: `chdb:///path` (embedded, the default) or `http(s)://host:8123`.

The same code and DDL serve both; only the DSN differs.
"""

from __future__ import annotations

import re
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


def connect(dsn: str, database: str, cluster: str | None = None) -> Client:
    """Returns a client bound to `database`, creating the database first if needed (on every node of
    `cluster`, whose client settings it then carries: ingest/cluster_ddl.py).

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
        bootstrap = _open(dsn, "", shape)
        try:
            bootstrap.command(create_database_ddl(shape))
        finally:
            bootstrap.close()
        return _open(dsn, database, shape)
    except ClickHouseError as error:
        raise StorageUnavailable(f"cannot open ClickHouse at {redact_dsn(dsn)}: {first_line(error)}") from error
    except OSError as error:
        raise StorageUnavailable(f"cannot reach ClickHouse at {redact_dsn(dsn)}: {error}") from error


def _open(dsn: str, database: str, shape: DdlShape) -> Client:
    if is_embedded(dsn):
        return clickhouse_connect.get_client(dsn=dsn, database=database)
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
