"""The normaliser: gives spans from OpenInference and OTel GenAI instrumentations (which know nothing of
agentledger) a run id and fills the typed columns from their own attributes, on Arrow columns.

Runs before export because the run index materialized view sees only the run id a row has at insert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator

from agentledger.collector.component import SpanBatch
from agentledger.emitter.spans import TRACER_NAME as EMITTER_SCOPE
from agentledger.schema import conventions as conv
from agentledger.schema import openinference as oi

TRACE_ID_SOURCE: Final = "trace_id"

# Typed column -> attribute keys read, in order, when the column is still empty after decoding (which
# already promoted the registry's own keys, gen_ai.* included).
_STRING_FALLBACKS: Final[Mapping[str, tuple[str, ...]]] = {
    "model": (conv.LLM_MODEL_NAME, "gen_ai.response.model"),
    "tool_name": (conv.TOOL_NAME, "tool_call.function.name"),
    "tool_call_id": ("tool_call.id",),
    "tool_arguments": ("tool_call.function.arguments",),
    "agent_name": ("agent.name",),
}
_INT_FALLBACKS: Final[Mapping[str, tuple[str, ...]]] = {
    "input_tokens": (conv.LLM_TOKEN_COUNT_PROMPT,),
    "output_tokens": (conv.LLM_TOKEN_COUNT_COMPLETION,),
}
# OpenInference flattened lists -> (content column, item name). The flattened keys leave the attributes
# Map once they are in their column: big content in the Map makes every read of the Map expensive.
_FLATTENED_LISTS: Final[Mapping[str, tuple[str, str]]] = {
    oi.INPUT_MESSAGES_PREFIX: ("input_messages", oi.MESSAGE_ITEM),
    oi.OUTPUT_MESSAGES_PREFIX: ("output_messages", oi.MESSAGE_ITEM),
    oi.RETRIEVAL_DOCUMENTS_PREFIX: ("retrieval_documents", oi.DOCUMENT_ITEM),
}
# Fields of flattened items that stay JSON numbers (when the text is one), as in OTel GenAI's documents.
_NUMERIC_FIELDS: Final = ("score",)
_JSON_NUMBER: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_INTEGER: Final = r"^-?[0-9]{1,18}$"
_SHORT_ESCAPES: Final = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


class NormalizeConfig(BaseModel):
    """`run_id_from`: where a span without `agent.run.id` takes its run id, first non-empty wins: span (then
    resource) attribute keys, or `trace_id` for the span's trace id. Unless `run_id_from_trace_siblings` is
    false, a span first takes the `agent.run.id` of another span of its trace in the same batch, and before
    falling back to the trace id, the run id a sibling found through the attribute keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id_from: tuple[str, ...] = (conv.SESSION_ID, conv.GEN_AI_CONVERSATION_ID, TRACE_ID_SOURCE)
    run_id_from_trace_siblings: bool = True

    @field_validator("run_id_from")
    @classmethod
    def _sources_are_distinct_keys(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        for source in sources:
            if not source.strip():
                raise ValueError("processors.normalize.run_id_from entries must not be empty")
        if len(set(sources)) != len(sources):
            raise ValueError("processors.normalize.run_id_from lists a source twice")
        return sources


class NormalizeProcessor:
    """Fills run_id and typed columns of spans that lack them; never overwrites what decoding set."""

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        self.config = config or NormalizeConfig()
        # RE2 patterns (Arrow's regex engine); an index beyond 9 digits would overflow the int64 cast.
        self._flattened_patterns = {
            prefix: rf"^{re.escape(prefix)}\.(?P<index>[0-9]{{1,9}})\.{re.escape(item)}\.(?P<field>.+)$"
            for prefix, (_, item) in _FLATTENED_LISTS.items()
        }

    def process(self, batch: SpanBatch) -> SpanBatch:
        if batch.num_rows == 0:
            return batch
        attributes = batch.column("attributes").combine_chunks()
        resource_attributes = batch.column("resource_attributes").combine_chunks()
        columns: dict[str, pa.Array] = {}

        columns["run_id"] = self._run_ids(batch, attributes, resource_attributes)
        for column, keys in _STRING_FALLBACKS.items():
            columns[column] = _fill_string(_array(batch, column), _first_value(attributes, keys))
        for column, keys in _INT_FALLBACKS.items():
            columns[column] = _fill_int(_array(batch, column), _first_int(attributes, keys))

        # An OpenInference TOOL span's input and output are the call's arguments and result.
        is_tool_call = pc.equal(_array(batch, "entry_type"), conv.SpanTypeValues.TOOL_CALL.value)
        for column, source in (("tool_arguments", "input_value"), ("tool_result", "output_value")):
            current = columns.get(column, _array(batch, column))
            candidate = pc.if_else(is_tool_call, _array(batch, source), "")
            columns[column] = _fill_string(current, candidate)

        attributes, flattened = self._move_flattened_lists(batch, attributes)
        columns.update(flattened)
        columns["attributes"] = attributes

        for name, values in columns.items():
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, batch.schema.field(index), values)
        return batch

    def shutdown(self) -> None:
        pass

    def _run_ids(self, batch: SpanBatch, attributes: pa.MapArray, resource_attributes: pa.MapArray) -> pa.Array:
        run_ids = _array(batch, "run_id")
        trace_ids = _array(batch, "trace_id")
        siblings = self.config.run_id_from_trace_siblings
        # A run id the producer set on one span of a trace is the best evidence for the others.
        if siblings:
            run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
        for source in self.config.run_id_from:
            if source == TRACE_ID_SOURCE:
                # A trace whose spans found a run id otherwise (a session id on one of them) keeps that.
                if siblings:
                    run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
                candidate = trace_ids
            else:
                candidate = pc.coalesce(
                    _non_empty(pc.map_lookup(attributes, source, "first")),
                    _non_empty(pc.map_lookup(resource_attributes, source, "first")),
                )
            run_ids = _fill_string(run_ids, candidate)
        if siblings and TRACE_ID_SOURCE not in self.config.run_id_from:
            run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
        return run_ids

    def _move_flattened_lists(
        self, batch: SpanBatch, attributes: pa.MapArray
    ) -> tuple[pa.MapArray, dict[str, pa.Array]]:
        """Fills empty content columns from OpenInference's flattened lists and drops the entries used from
        the Map. Rows whose column the producer already filled keep their entries (a third party's two
        encodings may differ), except the emitter's, whose flattened lists repeat its gen_ai.* content."""
        num_rows = batch.num_rows
        # The list kernels take lists, not maps: view the map as the list of key/value structs it is.
        as_list = pa.ListArray.from_arrays(attributes.offsets, attributes.values)
        entries = pc.list_flatten(as_list)
        keys = entries.field("key")
        values = entries.field("value")
        parents = pc.list_parent_indices(as_list)
        from_emitter = pc.take(pc.equal(_array(batch, "scope_name"), EMITTER_SCOPE), parents)
        dropped = pa.array(np.zeros(len(keys), dtype=bool))
        columns: dict[str, pa.Array] = {}
        for prefix, (column, _) in _FLATTENED_LISTS.items():
            pattern = self._flattened_patterns[prefix]
            matched = pc.match_substring_regex(keys, pattern)
            if not pc.any(matched).as_py():
                continue
            current = _array(batch, column)
            used = pc.and_(matched, pc.take(pc.equal(current, ""), parents))
            dropped = pc.or_(dropped, pc.and_(matched, pc.or_(used, from_emitter)))
            if pc.any(used).as_py():
                lists = _flattened_json(
                    pc.filter(keys, used), pc.filter(values, used), pc.filter(parents, used), pattern, num_rows
                )
                columns[column] = _fill_string(current, lists)
        if not pc.any(dropped).as_py():
            return attributes, columns
        return _map_without(attributes, keys, values, parents, pc.invert(dropped), num_rows), columns


def _array(batch: SpanBatch, column: str) -> pa.Array:
    return batch.column(column).combine_chunks()


def _non_empty(values: pa.Array) -> pa.Array:
    """Empty strings as nulls, so coalesce() skips them."""
    return pc.if_else(pc.equal(pc.fill_null(values, ""), ""), pa.scalar(None, pa.string()), values)


def _fill_string(current: pa.Array, candidate: pa.Array) -> pa.Array:
    """`current` where it is non-empty, else `candidate` where that is non-empty, else ''."""
    candidate = pc.fill_null(candidate, "")
    return pc.if_else(pc.equal(current, ""), candidate, current)


def _fill_int(current: pa.Array, candidate: pa.Array) -> pa.Array:
    return pc.if_else(pc.and_(pc.equal(current, 0), pc.is_valid(candidate)), candidate, current)


def _first_value(attributes: pa.MapArray, keys: tuple[str, ...]) -> pa.Array:
    return pc.coalesce(*(_non_empty(pc.map_lookup(attributes, key, "first")) for key in keys))


def _first_int(attributes: pa.MapArray, keys: tuple[str, ...]) -> pa.Array:
    text = _first_value(attributes, keys)
    # Values that are not plain integers become null instead of failing the whole batch's cast.
    valid = pc.fill_null(pc.match_substring_regex(text, _INTEGER), False)
    return pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.string())), pa.int64())


def _trace_sibling_run_ids(trace_ids: pa.Array, run_ids: pa.Array) -> pa.Array:
    """Per span, the run id another span of its trace carries in this batch (the greatest, if several)."""
    known = pa.table({"trace_id": trace_ids, "run_id": run_ids}).filter(pc.not_equal(run_ids, ""))
    if known.num_rows == 0:
        return pa.nulls(len(trace_ids), pa.string())
    per_trace = known.group_by("trace_id").aggregate([("run_id", "max")])
    positions = pc.index_in(trace_ids, value_set=per_trace.column("trace_id"))
    return pc.take(per_trace.column("run_id_max"), positions)


def _json_string(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal (quotes and escapes), as RFC 8259 requires."""
    escaped = pc.replace_substring(values, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if pc.any(pc.match_substring_regex(escaped, r"[\x00-\x1f]")).as_py():
        for code in range(0x20):
            replacement = _SHORT_ESCAPES.get(code, f"\\u{code:04x}")
            escaped = pc.replace_substring(escaped, chr(code), replacement)
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _flattened_json(keys: pa.Array, values: pa.Array, rows: pa.Array, pattern: str, num_rows: int) -> pa.Array:
    """OpenInference's `prefix.N.item.field = value` entries as one JSON array per row, ordered by N, of
    objects `{"field": value}`; nested fields keep their dotted names (`tool_calls.0.tool_call.id`)."""
    values = pc.fill_null(values, "")
    parts = pc.extract_regex(keys, pattern)
    indexes = pc.cast(parts.field("index"), pa.int64())
    fields = parts.field("field")
    is_number = pc.and_(
        pc.is_in(fields, value_set=pa.array(_NUMERIC_FIELDS)), pc.match_substring_regex(values, _JSON_NUMBER)
    )
    json_values = pc.if_else(is_number, values, _json_string(values))
    members = pc.binary_join_element_wise(_json_string(fields), json_values, ":")
    items = (
        pa.table({"row": rows, "index": indexes, "member": members})
        .group_by(["row", "index"], use_threads=False)
        .aggregate([("member", "list")])
        .sort_by([("row", "ascending"), ("index", "ascending")])
    )
    objects = pc.binary_join_element_wise("{", pc.binary_join(items.column("member_list"), ","), "}", "")
    per_row = (
        pa.table({"row": items.column("row"), "object": objects})
        .group_by("row", use_threads=False)
        .aggregate([("object", "list")])
    )
    arrays = pc.binary_join_element_wise("[", pc.binary_join(per_row.column("object_list"), ","), "]", "")
    positions = pc.index_in(pa.array(np.arange(num_rows, dtype=np.int64)), value_set=per_row.column("row"))
    return pc.fill_null(pc.take(arrays, positions), "")


def _map_without(
    attributes: pa.MapArray, keys: pa.Array, values: pa.Array, parents: pa.Array, keep: pa.Array, num_rows: int
) -> pa.MapArray:
    kept_parents = pc.filter(parents, keep).to_numpy(zero_copy_only=False)
    counts = np.bincount(kept_parents, minlength=num_rows)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)]).astype(np.int32)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pc.filter(keys, keep), pc.filter(values, keep), type=attributes.type
    )
