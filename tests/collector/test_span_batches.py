"""The span-batch builders the processor tests and the benchmarks share: every SPAN_SCHEMA column gets its
type's default (a boolean column False, not the 0 or '' that once crashed three benchmarks), unknown
column names and unknown column types fail loudly."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agentledger.schema.span_columns import SPAN_SCHEMA
from tests.collector.span_batches import column_default, span_columns_table, span_row, span_rows_table


def test_every_column_of_the_schema_gets_a_default_of_its_type() -> None:
    table = span_columns_table(2, input_value=["a", "b"])

    assert table.schema == SPAN_SCHEMA
    row = table.to_pylist()[1]
    assert row["input_value"] == "b"
    assert row["identity_mismatch"] is False
    assert row["truncated"] == [] and row["attributes"] == [] and row["input_tokens"] == 0
    assert row["run_id"] == "" and row["duration_ns"] == 0
    assert span_rows_table([span_row(input_value="b")]).to_pylist()[0] == {**row, "input_value": "b"}


def test_a_name_that_is_no_column_and_a_wrong_length_are_refused() -> None:
    with pytest.raises(KeyError, match="not columns of SPAN_SCHEMA: identity_missmatch"):
        span_row(identity_missmatch=True)
    with pytest.raises(KeyError, match="not columns of SPAN_SCHEMA: nope"):
        span_columns_table(1, nope=["x"])
    with pytest.raises(ValueError, match="column 'name' has 1 values for 2 spans"):
        span_columns_table(2, name=["x"])


def test_a_column_type_without_a_default_fails_naming_the_column() -> None:
    with pytest.raises(TypeError, match="no default for column 'score' of type double"):
        column_default(pa.field("score", pa.float64()))
