"""The DDL shape of the migrations: single node (the files as written) or a ClickHouse cluster.

The cluster shape is generated from the same migration files, statement by statement: each table becomes a
Replicated*MergeTree `<name>_local` on every node plus a Distributed `<name>` sharded by
cityHash64(tenant, run_id), so a run's spans, links and index rows share one shard and timelines stay
single-shard; materialized views read and fill the local tables. A statement no rule covers is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

CLUSTER_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
LOCAL_SUFFIX: Final = "_local"
# Where each shard's replicas meet in Keeper; `{shard}` and `{replica}` come from each node's macros.
REPLICA_PATH: Final = "/clickhouse/tables/{shard}/{database}/{table}"
# The migrations ledger is one table every node replicates (no `{shard}`), so any node answers it in full.
LEDGER_REPLICA_PATH: Final = "/clickhouse/tables/all/{database}/{table}"
REPLICA_NAME: Final = "{replica}"
SHARD_COLUMNS: Final = ("tenant", "run_id")
LEDGER_TABLE: Final = "schema_migrations"

# The client settings a cluster needs (checked to be real settings by tests/ingest/test_cluster_ddl.py):
# inserts into a Distributed table return once the shards hold the rows (the exporter reads its own writes:
# chain state, dedup lookups), and a subquery over a Distributed table inside a distributed query runs once,
# globally, instead of being refused (ClickHouse's default) or read shard-locally.
CLUSTER_CLIENT_SETTINGS: Final[dict[str, str | int]] = {
    "distributed_foreground_insert": 1,
    "distributed_product_mode": "global",
}

_IDENTIFIER = r"`?(?P<name>[A-Za-z_][A-Za-z0-9_]*)`?"
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+{_IDENTIFIER}\s*\(", re.I | re.S)
_CREATE_MV = re.compile(
    rf"^CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+{_IDENTIFIER}\s+TO\s+`?(?P<target>[A-Za-z_][A-Za-z0-9_]*)`?"
    r"\s+(?P<rest>AS\s+SELECT\b.*)$",
    re.I | re.S,
)
_CREATE_VIEW = re.compile(
    rf"^CREATE\s+VIEW\s+IF\s+NOT\s+EXISTS\s+{_IDENTIFIER}\s+(?P<rest>AS\s+SELECT\b.*)$", re.I | re.S
)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+{_IDENTIFIER}\s+(?P<actions>.*)$", re.I | re.S)
_DROP = re.compile(rf"^DROP\s+(?P<what>TABLE|VIEW)\s+IF\s+EXISTS\s+{_IDENTIFIER}\s*$", re.I | re.S)
_INSERT_SELECT = re.compile(rf"^INSERT\s+INTO\s+{_IDENTIFIER}\b.*\bSELECT\b", re.I | re.S)
_ENGINE = re.compile(r"^\s*ENGINE\s*=\s*(?P<engine>[A-Za-z]+)\s*", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+(?:\((?P<tuple>[^()]*)\)|(?P<single>[A-Za-z_][A-Za-z0-9_]*))", re.I)
_NON_REPLICATED_DEDUP = re.compile(r"\bnon_replicated_deduplication_window\b", re.I)
# ALTER actions that change the columns: the Distributed table must follow its local table.
_COLUMN_ACTION = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.I)
# ALTER actions about storage (parts, TTL, indexes, settings, mutations): local tables only.
_STORAGE_ACTION = re.compile(
    r"^(MODIFY\s+(SETTING|TTL|ORDER\s+BY|COMMENT)|REMOVE\s+TTL|(ADD|DROP|MATERIALIZE|CLEAR)\s+(INDEX|PROJECTION)"
    r"|UPDATE|DELETE)\b",
    re.I,
)


class ClusterDdlError(ValueError):
    """A migration statement has no cluster shape, or the cluster name is not usable; says which and why."""


@dataclass(frozen=True)
class DdlShape:
    """Where the DDL goes: `cluster` None is one node (chDB or one server), else the cluster's name in the
    servers' remote_servers; `database` is where the tables live (Distributed tables name it)."""

    database: str
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None and not CLUSTER_NAME.match(self.cluster):
            raise ClusterDdlError(
                f"storage.cluster must be a cluster name from remote_servers (letters, digits, _ and -), not"
                f" {self.cluster!r}"
            )

    @property
    def on_cluster(self) -> str:
        return "" if self.cluster is None else f" ON CLUSTER `{self.cluster}`"


@dataclass
class _Tables:
    """What earlier statements created, so later ones (views, ALTERs) name the right local tables."""

    sharded: set[str] = field(default_factory=set)
    views: set[str] = field(default_factory=set)


def create_database_ddl(shape: DdlShape) -> str:
    # The identifier is validated by the settings; DDL cannot take it as a bound parameter.
    return f"CREATE DATABASE IF NOT EXISTS `{shape.database}`{shape.on_cluster}"


def ledger_ddl(shape: DdlShape) -> str:
    columns = (
        "(\n    version UInt32,\n    name String,\n    checksum String,\n"
        "    applied_at DateTime64(9) DEFAULT now64(9)\n)"
    )
    if shape.cluster is None:
        engine = "ReplacingMergeTree(applied_at)"
    else:
        engine = f"ReplicatedReplacingMergeTree('{LEDGER_REPLICA_PATH}', '{REPLICA_NAME}', applied_at)"
    head = f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE}{shape.on_cluster}"
    return f"{head}\n{columns}\nENGINE = {engine}\nORDER BY version"


def shape_migrations(statements_by_migration: Sequence[Sequence[str]], shape: DdlShape) -> list[list[str]]:
    """The statements of each migration (in order) in `shape`; the single-node shape is the files as written."""
    if shape.cluster is None:
        return [list(statements) for statements in statements_by_migration]
    tables = _Tables()
    return [
        [shaped for statement in statements for shaped in _cluster_statement(statement, shape, tables)]
        for statements in statements_by_migration
    ]


def _cluster_statement(statement: str, shape: DdlShape, tables: _Tables) -> list[str]:
    if (match := _CREATE_TABLE.match(statement)) is not None:
        return _create_table(match.group("name"), statement, match.end() - 1, shape, tables)
    if (match := _CREATE_MV.match(statement)) is not None:
        return [_create_materialized_view(match, shape, tables)]
    if (match := _CREATE_VIEW.match(statement)) is not None:
        # A plain view reads the Distributed tables, so it answers for the whole cluster from any node.
        tables.views.add(match.group("name"))
        return [f"CREATE VIEW IF NOT EXISTS {match.group('name')}{shape.on_cluster} {match.group('rest')}"]
    if (match := _ALTER_TABLE.match(statement)) is not None:
        return _alter_table(match.group("name"), match.group("actions"), statement, shape, tables)
    if (match := _DROP.match(statement)) is not None:
        name, what = match.group("name"), match.group("what").upper()
        dropped = [f"DROP {what} IF EXISTS {name}{shape.on_cluster} SYNC"]
        if name in tables.sharded:
            dropped.append(f"DROP TABLE IF EXISTS {name}{LOCAL_SUFFIX}{shape.on_cluster} SYNC")
            tables.sharded.discard(name)
        return dropped
    if _INSERT_SELECT.match(statement) is not None:
        # A backfill: read and written through the Distributed tables, it lands on the right shards.
        return [statement]
    raise ClusterDdlError(f"no cluster shape for the statement {_head(statement)!r}; add a rule in"
                          " agentledger/ingest/cluster_ddl.py")  # fmt: skip


def _create_table(name: str, statement: str, open_paren: int, shape: DdlShape, tables: _Tables) -> list[str]:
    close_paren = _matching_paren(statement, open_paren)
    columns, rest = statement[open_paren : close_paren + 1], statement[close_paren + 1 :]
    engine_match = _ENGINE.match(rest)
    if engine_match is None or not engine_match.group("engine").endswith("MergeTree"):
        raise ClusterDdlError(f"table {name}: only *MergeTree tables have a cluster shape ({_head(statement)!r})")
    engine = engine_match.group("engine")
    after_engine = rest[engine_match.end() :]
    engine_arguments = ""
    if after_engine.startswith("("):
        end = _matching_paren(after_engine, 0)
        engine_arguments, after_engine = after_engine[1:end].strip(), after_engine[end + 1 :]
    if engine.startswith("Replicated"):
        raise ClusterDdlError(f"table {name}: write the single-node engine; the cluster shape adds Replicated")
    replicated_arguments = ", ".join(
        argument for argument in (f"'{REPLICA_PATH}'", f"'{REPLICA_NAME}'", engine_arguments) if argument
    )
    local = f"{name}{LOCAL_SUFFIX}"
    settings = _NON_REPLICATED_DEDUP.sub("replicated_deduplication_window", after_engine.strip())
    tables.sharded.add(name)
    return [
        f"CREATE TABLE IF NOT EXISTS {local}{shape.on_cluster}\n{columns}\n"
        f"ENGINE = Replicated{engine}({replicated_arguments})\n{settings}",
        f"CREATE TABLE IF NOT EXISTS {name}{shape.on_cluster} AS {local}\n"
        f"ENGINE = Distributed('{shape.cluster}', '{shape.database}', '{local}', {_sharding_key(name, after_engine)})",
    ]


def _sharding_key(name: str, clauses: str) -> str:
    """cityHash64(tenant, run_id) when the sorting key holds both; else the first two sorting-key columns,
    so rows a Replacing/Aggregating merge must meet always land on one shard."""
    match = _ORDER_BY.search(clauses)
    if match is None:
        raise ClusterDdlError(f"table {name}: a sharded table needs an ORDER BY to derive its sharding key from")
    raw = match.group("tuple") if match.group("tuple") is not None else match.group("single")
    key = [column.strip().strip("`") for column in raw.split(",") if column.strip()]
    chosen = list(SHARD_COLUMNS) if all(column in key for column in SHARD_COLUMNS) else key[:2]
    if not chosen or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column) for column in chosen):
        raise ClusterDdlError(f"table {name}: cannot derive a sharding key from ORDER BY {raw!r}")
    return f"cityHash64({', '.join(chosen)})"


def _create_materialized_view(match: re.Match[str], shape: DdlShape, tables: _Tables) -> str:
    name, target = match.group("name"), match.group("target")
    if target not in tables.sharded:
        raise ClusterDdlError(f"materialized view {name}: its target {target} is not a table the migrations create")
    # On the local tables: each shard's view sees the inserts of that shard (a run's spans all land on one).
    select = _local_sources(match.group("rest"), tables)
    tables.views.add(name)
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{shape.on_cluster} TO {target}{LOCAL_SUFFIX} {select}"


def _local_sources(select: str, tables: _Tables) -> str:
    def local(found: re.Match[str]) -> str:
        table = found.group("table")
        return f"{found.group('keyword')} {table}{LOCAL_SUFFIX}" if table in tables.sharded else found.group(0)

    return re.sub(r"\b(?P<keyword>FROM|JOIN)\s+`?(?P<table>[A-Za-z_][A-Za-z0-9_]*)`?", local, select, flags=re.I)


def _alter_table(name: str, actions: str, statement: str, shape: DdlShape, tables: _Tables) -> list[str]:
    if name not in tables.sharded:
        raise ClusterDdlError(f"ALTER TABLE {name}: not a table the migrations create ({_head(statement)!r})")
    parts = _split_top_level(actions)
    if all(_COLUMN_ACTION.match(part) for part in parts):
        # Columns first on the local table, then on the Distributed one that reads it.
        return [
            f"ALTER TABLE {name}{LOCAL_SUFFIX}{shape.on_cluster} {actions}",
            f"ALTER TABLE {name}{shape.on_cluster} {actions}",
        ]
    if all(_STORAGE_ACTION.match(part) for part in parts):
        local_actions = _NON_REPLICATED_DEDUP.sub("replicated_deduplication_window", actions)
        return [f"ALTER TABLE {name}{LOCAL_SUFFIX}{shape.on_cluster} {local_actions}"]
    raise ClusterDdlError(f"ALTER TABLE {name}: no cluster shape for {actions.strip()!r} (split column changes"
                          " and storage changes into separate statements, or add a rule)")  # fmt: skip


def cluster_mutation(statement: str, shape: DdlShape) -> str:
    """An `ALTER TABLE t UPDATE|DELETE ...` for the shape: on a cluster it runs on the local tables of every
    node (a Distributed table takes no mutations)."""
    if shape.cluster is None:
        return statement
    match = _ALTER_TABLE.match(statement.strip())
    if match is None or not re.match(r"^(UPDATE|DELETE)\b", match.group("actions"), re.I):
        raise ClusterDdlError(f"not a mutation: {_head(statement)!r}")
    return f"ALTER TABLE {match.group('name')}{LOCAL_SUFFIX}{shape.on_cluster} {match.group('actions')}"


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) for each character of `text` from `start` that is
    outside quotes: the one scanner both callers below share."""
    depth = 0
    quote: str | None = None
    for index in range(start, len(text)):
        character = text[index]
        if quote is not None:
            if character == quote and text[index - 1] != "\\":
                quote = None
            continue
        if character in "'`\"":
            quote = character
            continue
        depth += {"(": 1, ")": -1}.get(character, 0)
        yield index, character, depth


def _matching_paren(text: str, open_index: int) -> int:
    for index, character, depth in _unquoted(text, open_index):
        if character == ")" and depth == 0:
            return index
    raise ClusterDdlError(f"unbalanced parentheses in {_head(text)!r}")


def _split_top_level(text: str) -> list[str]:
    """`text` split at commas outside parentheses and quotes (the actions of one ALTER)."""
    parts, start = [], 0
    for index, character, depth in _unquoted(text):
        if character == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _head(statement: str) -> str:
    return " ".join(statement.split())[:80]


def render(sections: Iterable[tuple[str, Sequence[str]]]) -> str:
    """The printable script: a `-- title` line per section, then its statements, each ending in `;`."""
    lines: list[str] = []
    for title, statements in sections:
        lines.append(f"-- {title}")
        lines.extend(f"{statement.strip()};\n" for statement in statements)
    return "\n".join(lines)
