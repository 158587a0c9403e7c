"""A spool left by an older version holds batches without the columns SPAN_SCHEMA gained since (migration
0011's conversation_id): the exporters still deliver them, those columns empty, instead of refusing them."""

from __future__ import annotations

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.exporters.phoenix_convert import to_otlp_request
from agentledger.schema.span_columns import with_added_columns
from tests.collector.span_batches import span_batch


def test_a_batch_without_the_conversation_column_is_stored_with_it_empty(client: Client) -> None:
    old = span_batch(["a", "b"], run_id="run_old").drop_columns(["conversation_id"])

    ClickHouseExporter(client).export(old, "batch-old")

    assert client.query("SELECT name, run_id, conversation_id FROM spans ORDER BY name").result_rows == [
        ("a", "run_old", ""),
        ("b", "run_old", ""),
    ]
    assert len(to_otlp_request(with_added_columns(old), "p").resource_spans[0].scope_spans[0].spans) == 2


def test_a_batch_of_another_shape_is_left_for_the_exporter_to_refuse() -> None:
    current = span_batch(["a"])
    renamed = current.rename_columns([*current.schema.names[:-1], "surprise"])
    assert with_added_columns(renamed) is renamed
    # Missing more than the columns added since: not an older batch, refused as it is.
    partial = pa.table({"span_id": ["x"]})
    assert with_added_columns(partial) is partial
