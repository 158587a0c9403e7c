"""The spans table's columns as an Arrow schema: the one columnar batch shape every collector stage uses.

Must match schema/migrations (a test compares it with the migrated table).
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from agentledger.schema.conventions import ATTRIBUTE_COLUMNS

TIMESTAMP: Final = pa.timestamp("ns")
STRING_MAP: Final = pa.map_(pa.string(), pa.string())

_ARROW_BY_KIND: Final = {"string": pa.string(), "int": pa.int64(), "content": pa.string()}

# Columns every span has, independent of the conventions registry.
_ENVELOPE: Final = [
    ("tenant", pa.string()),
    ("run_id", pa.string()),
    ("trace_id", pa.string()),
    ("span_id", pa.string()),
    ("parent_span_id", pa.string()),
    ("start_time", TIMESTAMP),
    ("end_time", TIMESTAMP),
    ("duration_ns", pa.uint64()),
    ("name", pa.string()),
    ("kind", pa.string()),
    ("status_code", pa.string()),
    ("status_message", pa.string()),
    ("service_name", pa.string()),
    ("scope_name", pa.string()),
    ("scope_version", pa.string()),
    # Stamped by the collector from the request's credentials, never taken from the span.
    ("verified_agent_id", pa.string()),
    ("identity_mismatch", pa.bool_()),
    # What the collector's limits cut on this span (attribute_value, content, attributes, events, links).
    ("truncated", pa.list_(pa.string())),
    # Filled by the normaliser: the conversation (session, thread) the span's run belongs to, namespaced
    # by tenant and service (migration 0011); empty when the producer named none.
    ("conversation_id", pa.string()),
]

_TRAILER: Final = [
    ("attributes", STRING_MAP),
    ("resource_attributes", STRING_MAP),
    ("event_times", pa.list_(TIMESTAMP)),
    ("event_names", pa.list_(pa.string())),
    ("event_attributes", pa.list_(STRING_MAP)),
    ("link_trace_ids", pa.list_(pa.string())),
    ("link_span_ids", pa.list_(pa.string())),
    ("link_attributes", pa.list_(STRING_MAP)),
]

_ENVELOPE_NAMES: Final = {name for name, _ in _ENVELOPE}

# Promoted attribute columns, in registry order, skipping those the envelope already has (run_id, tenant).
PROMOTED_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = tuple(
    (key, column, kind) for key, (column, kind) in ATTRIBUTE_COLUMNS.items() if column not in _ENVELOPE_NAMES
)

SPAN_SCHEMA: Final = pa.schema(
    [pa.field(name, type_, nullable=False) for name, type_ in _ENVELOPE]
    + [pa.field(column, _ARROW_BY_KIND[kind], nullable=False) for _, column, kind in PROMOTED_COLUMNS]
    + [pa.field(name, type_, nullable=False) for name, type_ in _TRAILER]
)


def column_default(field: pa.Field) -> object:
    """What a span holds in a column nothing set, as the receiver's decoder writes it. An Arrow type this does
    not know fails here, naming the column, so a new column type breaks loudly rather than storing a value of
    the wrong type."""
    if isinstance(field.type, pa.ListType | pa.MapType):
        return []
    if pa.types.is_string(field.type):
        return ""
    if pa.types.is_boolean(field.type):
        return False
    if pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type):
        return 0
    raise TypeError(f"no default for column {field.name!r} of type {field.type}")


# Columns SPAN_SCHEMA gained after batches were first spooled, with the migration that added them: a batch
# lacking only these was written by an older version.
ADDED_COLUMNS: Final = ("conversation_id",)  # 0011


def with_added_columns(batch: pa.Table) -> pa.Table:
    """A batch an older version wrote (a spool left by an upgrade) with the ADDED_COLUMNS it lacks at their
    empty values, in SPAN_SCHEMA's order; any other batch as it is (the exporters refuse it)."""
    missing = set(SPAN_SCHEMA.names) - set(batch.schema.names)
    if not missing or not missing <= set(ADDED_COLUMNS) or not set(batch.schema.names) <= set(SPAN_SCHEMA.names):
        return batch
    if any(not batch.schema.field(name).type.equals(SPAN_SCHEMA.field(name).type) for name in batch.schema.names):
        return batch
    columns = [
        batch.column(field.name) if field.name in batch.schema.names
        else pa.array([column_default(field)] * batch.num_rows, field.type)
        for field in SPAN_SCHEMA
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=SPAN_SCHEMA)
