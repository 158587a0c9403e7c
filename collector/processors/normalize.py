"""The normaliser: gives spans from third-party instrumentations (which know nothing of agentledger) a run id
and a conversation, and fills the typed columns from their own attributes (families.py), on Arrow columns.

Runs before export because the run index materialized view sees only the run id a row has at insert.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Final
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator

from agentledger.collector.component import SpanBatch
from agentledger.collector.processors.families import FAMILIES, ITEM_NAMES, FlattenedList
from agentledger.emitter.spans import TRACER_NAME as EMITTER_SCOPE
from agentledger.schema import conventions as conv

TRACE_ID_SOURCE: Final = "trace_id"

# Fields of flattened items that stay JSON numbers (when the text is one), as in OTel GenAI's documents.
_NUMERIC_FIELDS: Final = ("score",)
_JSON_NUMBER: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_INTEGER: Final = r"^-?[0-9]{1,18}$"
_SHORT_ESCAPES: Final = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
# A JSON member name holding a list index (`"tool_calls.0.tool_call.id"`): the object needs nesting.
_DOTTED_INDEX: Final = r'"[A-Za-z_]+\.[0-9]+\.'
OPENINFERENCE_METADATA: Final = "metadata"
_RUN_ID_IN_METADATA: Final = r'"agent\.run\.id"\s*:\s*"(?P<run_id>[^"\\]+)"'
_DEFAULT_CONVERSATION_SOURCES: Final = (
    conv.GEN_AI_CONVERSATION_ID,
    conv.SESSION_ID,
    "traceloop.association.properties.session_id",
)


def _distinct_keys(sources: tuple[str, ...], key: str) -> tuple[str, ...]:
    for source in sources:
        if not source.strip():
            raise ValueError(f"processors.normalize.{key} entries must not be empty")
    if len(set(sources)) != len(sources):
        raise ValueError(f"processors.normalize.{key} lists a source twice")
    return sources


class NormalizeConfig(BaseModel):
    """How spans from instrumentations that know nothing of agentledger are grouped into runs.

    A span's run id, first found wins (README, "Run grouping"): its own or its resource's `agent.run.id`;
    the `agent.run.id` in its OpenInference `metadata` JSON (spans of instrumentations inside an emitter run);
    with `run_id_from_trace_siblings`, the `agent.run.id` another span of its trace carries in the same batch;
    then each `run_id_from` source: a span (then resource) attribute key, or `trace_id` (the default, the
    only source that cannot depend on how the sender split a trace into batches). `conversation_id_from`: the
    keys naming the session/thread/conversation a run belongs to; stored namespaced by tenant and service.
    `agent_name_from_service`: a run span (or a trace's root) without an agent name takes `service.name`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id_from: tuple[str, ...] = (TRACE_ID_SOURCE,)
    run_id_from_trace_siblings: bool = True
    conversation_id_from: tuple[str, ...] = _DEFAULT_CONVERSATION_SOURCES
    agent_name_from_service: bool = True

    @field_validator("run_id_from")
    @classmethod
    def _run_sources_are_distinct_keys(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct_keys(sources, "run_id_from")

    @field_validator("conversation_id_from")
    @classmethod
    def _conversation_sources_are_distinct_keys(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        if TRACE_ID_SOURCE in sources:
            raise ValueError("processors.normalize.conversation_id_from takes attribute keys, not trace_id")
        return _distinct_keys(sources, "conversation_id_from")


def _flattened_pattern(flattened: FlattenedList) -> str:
    # RE2 patterns (Arrow's regex engine); an index beyond 9 digits would overflow the int64 cast.
    item = rf"{re.escape(flattened.item)}\." if flattened.item else ""
    return rf"^{re.escape(flattened.prefix)}\.(?P<index>[0-9]{{1,9}})\.{item}(?P<field>.+)$"


class NormalizeProcessor:
    """Fills run_id, conversation_id and typed columns of spans that lack them from each family's table
    (collector/processors/families.py); never overwrites what decoding set."""

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        self.config = config or NormalizeConfig()
        self._flattened = [(flattened, _flattened_pattern(flattened)) for family in FAMILIES
                           for flattened in family.flattened]  # fmt: skip

    def process(self, batch: SpanBatch) -> SpanBatch:
        if batch.num_rows == 0:
            return batch
        attributes = batch.column("attributes").combine_chunks()
        resource_attributes = batch.column("resource_attributes").combine_chunks()
        lookup, resource_lookup = _Lookup(attributes), _Lookup(resource_attributes)
        columns: dict[str, pa.Array] = {}

        def current(column: str) -> pa.Array:
            return columns[column] if column in columns else _array(batch, column)

        columns["run_id"] = self._run_ids(batch, lookup, resource_lookup)
        columns["conversation_id"] = self._conversation_ids(batch, lookup, resource_lookup, columns["run_id"])
        for family in FAMILIES:
            for column, keys in family.strings.items():
                columns[column] = _fill_string(current(column), _first_value(lookup, keys))
            for column, keys in family.ints.items():
                columns[column] = _fill_int(current(column), _first_int(lookup, keys))
        columns["entry_type"] = _span_types(
            current("entry_type"), current("tool_name"), lookup, _array(batch, "scope_name")
        )
        entry_type = columns["entry_type"]
        is_run = pc.equal(entry_type, conv.SpanTypeValues.RUN.value)
        is_tool_call = pc.equal(entry_type, conv.SpanTypeValues.TOOL_CALL.value)
        for family in FAMILIES:
            agent_names = _first_value(lookup, family.agent_names)
            if agent_names is not None:
                columns["agent_name"] = _fill_string(current("agent_name"), pc.if_else(is_run, agent_names, ""))
            tool_names = _first_value(lookup, family.tool_names)
            if tool_names is not None:
                columns["tool_name"] = _fill_string(current("tool_name"), pc.if_else(is_tool_call, tool_names, ""))
        if self.config.agent_name_from_service:
            # A run's own span, else the root of a trace without one, speaks for the agent; other spans stay
            # unnamed so the run index's agent name stays the agent span's.
            trace_ids = _array(batch, "trace_id")
            traces_with_runs = pc.unique(pc.filter(trace_ids, is_run))
            root_of_runless_trace = pc.and_(
                pc.equal(_array(batch, "parent_span_id"), ""),
                pc.invert(pc.is_in(trace_ids, value_set=traces_with_runs)),
            )
            speaks = pc.or_(is_run, root_of_runless_trace)
            columns["agent_name"] = _fill_string(
                current("agent_name"), pc.if_else(speaks, _array(batch, "service_name"), "")
            )

        # A tool span's input and output are the call's arguments and result (OpenInference, OpenLLMetry).
        for column, source in (("tool_arguments", "input_value"), ("tool_result", "output_value")):
            columns[column] = _fill_string(current(column), pc.if_else(is_tool_call, current(source), ""))
        columns["name"] = _span_names(_array(batch, "name"), lookup, current("operation"), current("model"))

        attributes, flattened = self._move_flattened_lists(batch, attributes)
        columns.update(flattened)
        for column, messages in _messages_from_span_events(batch).items():
            columns[column] = _fill_string(current(column), messages)
        is_prompt = pc.equal(entry_type, conv.SpanTypeValues.PROMPT.value)
        columns["tool_call_id"] = _tool_call_ids_from_trace(
            _array(batch, "trace_id"), is_tool_call, current("tool_call_id"), current("tool_name"),
            current("tool_arguments"), is_prompt, current("output_messages"),
        )  # fmt: skip
        renamed_to: set[str] = set()
        for family in FAMILIES:
            for old, new in family.renames.items():
                if old in lookup.keys or old in renamed_to:  # a key no span has renames nothing
                    attributes = _map_with_renamed(attributes, old, new)
                    renamed_to.add(new)
        columns["attributes"] = attributes

        for name, values in columns.items():
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, batch.schema.field(index), values)
        return batch

    def shutdown(self) -> None:
        pass

    def _run_ids(self, batch: SpanBatch, attributes: _Lookup, resource_attributes: _Lookup) -> pa.Array:
        run_ids = _array(batch, "run_id")
        if not pc.any(pc.equal(run_ids, "")).as_py():  # every step below only fills empty run ids
            return run_ids
        trace_ids = _array(batch, "trace_id")
        siblings = self.config.run_id_from_trace_siblings
        # OpenInference spans inside an emitter run carry the run id in their `metadata` JSON (run_context.py).
        metadata = attributes.first(OPENINFERENCE_METADATA)
        if metadata is not None:
            metadata = pc.fill_null(metadata, "")
            in_metadata = pc.extract_regex(metadata, _RUN_ID_IN_METADATA).field("run_id")
            run_ids = _fill_string(run_ids, pc.if_else(pc.match_substring_regex(metadata, _RUN_ID_IN_METADATA),
                                                       in_metadata, ""))  # fmt: skip
        # A run id the producer set on one span of a trace is the best evidence for the others.
        if siblings:
            run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
        for source in self.config.run_id_from:
            if source == TRACE_ID_SOURCE:
                # A trace whose spans found a run id otherwise (a configured key on one of them) keeps that.
                if siblings:
                    run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
                candidate = trace_ids
            else:
                candidate = _span_or_resource(attributes, resource_attributes, (source,))
            run_ids = _fill_string(run_ids, candidate)
        if siblings and TRACE_ID_SOURCE not in self.config.run_id_from:
            run_ids = _fill_string(run_ids, _trace_sibling_run_ids(trace_ids, run_ids))
        return run_ids

    def _conversation_ids(
        self, batch: SpanBatch, attributes: _Lookup, resource_attributes: _Lookup, run_ids: pa.Array
    ) -> pa.Array:
        current = _array(batch, "conversation_id")
        found = _span_or_resource(attributes, resource_attributes, self.config.conversation_id_from)
        if found is None:  # no span names a conversation (or no source is configured)
            return current
        raw = pc.fill_null(found, "")
        # The emitter mirrors its run id into session.id for OpenInference: that names the run, not a conversation.
        raw = pc.if_else(pc.equal(raw, run_ids), "", raw)
        namespaced = pc.binary_join_element_wise(
            _percent_encoded(_array(batch, "tenant")), _percent_encoded(_array(batch, "service_name")), raw, "/"
        )
        return _fill_string(current, pc.if_else(pc.equal(raw, ""), "", namespaced))

    def _move_flattened_lists(
        self, batch: SpanBatch, attributes: pa.MapArray
    ) -> tuple[pa.MapArray, dict[str, pa.Array]]:
        """Fills empty content columns from flattened lists (OpenInference's, OpenLLMetry's legacy ones) and
        drops the entries used from the Map. Rows whose column the producer already filled keep their
        entries (a third party's two encodings may differ), except the emitter's, whose flattened lists
        repeat its gen_ai.* content."""
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
        for flattened, pattern in self._flattened:
            column = flattened.column
            # A prefix test first: most batches carry one family's lists, and the regex costs more.
            if not pc.any(pc.starts_with(keys, flattened.prefix + ".")).as_py():
                continue
            matched = pc.match_substring_regex(keys, pattern)
            if not pc.any(matched).as_py():
                continue
            current = columns.get(column, _array(batch, column))
            used = pc.and_(matched, pc.take(pc.equal(current, ""), parents))
            dropped = pc.or_(dropped, pc.and_(matched, pc.or_(used, from_emitter)))
            if pc.any(used).as_py():
                lists = _flattened_json(
                    pc.filter(keys, used), pc.filter(values, used), pc.filter(parents, used), pattern, num_rows
                )
                if column in ("input_messages", "output_messages"):
                    lists = _nested_messages(lists)  # only what the normaliser built: a producer's JSON stays
                columns[column] = _fill_string(current, lists)
        if not pc.any(dropped).as_py():
            return attributes, columns
        return _map_without(attributes, keys, values, parents, pc.invert(dropped), num_rows), columns


# Deprecated GenAI content as span events: (event name -> (content column, attribute holding a whole JSON
# message list)) and the per-message events whose attributes are one message.
_LIST_EVENTS: Final = {
    "gen_ai.content.prompt": ("input_messages", "gen_ai.prompt"),
    "gen_ai.content.completion": ("output_messages", "gen_ai.completion"),
}
_MESSAGE_EVENTS: Final = {
    "gen_ai.system.message": ("input_messages", "system"),
    "gen_ai.user.message": ("input_messages", "user"),
    "gen_ai.assistant.message": ("input_messages", "assistant"),
    "gen_ai.tool.message": ("input_messages", "tool"),
    "gen_ai.choice": ("output_messages", "assistant"),
}


def _json_or_text(value: str) -> Any:
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _messages_from_span_events(batch: SpanBatch) -> dict[str, pa.Array]:
    """Content the deprecated GenAI conventions put in span events (`gen_ai.content.prompt` with
    `gen_ai.prompt`, or one `gen_ai.user.message` / `gen_ai.choice` ... event per message) as JSON message
    lists; only rows with such events are read in Python."""
    names = batch.column("event_names").combine_chunks()
    flat = pc.list_flatten(names)
    known = pa.array([*_LIST_EVENTS, *_MESSAGE_EVENTS], pa.string())
    if len(flat) == 0 or not pc.any(pc.is_in(flat, value_set=known)).as_py():
        return {}
    rows = np.unique(pc.filter(pc.list_parent_indices(names), pc.is_in(flat, value_set=known)).to_numpy())
    event_attributes = batch.column("event_attributes").combine_chunks()
    found: dict[str, list[str]] = {"input_messages": [""] * batch.num_rows, "output_messages": [""] * batch.num_rows}
    for row in rows:
        lists: dict[str, list[Any]] = {}
        for name, pairs in zip(names[row].as_py(), event_attributes[row].as_py(), strict=True):
            attributes = dict(pairs)
            if name in _LIST_EVENTS:
                column, key = _LIST_EVENTS[name]
                parsed = _json_or_text(attributes.get(key, ""))
                if isinstance(parsed, list):
                    lists.setdefault(column, []).extend(parsed)
            elif name in _MESSAGE_EVENTS:
                column, role = _MESSAGE_EVENTS[name]
                message = {key: int(value) if key == "index" and value.isdigit() else _json_or_text(value)
                           for key, value in attributes.items()
                           if key not in ("gen_ai.system", "gen_ai.provider.name", "event.name")}  # fmt: skip
                if column == "input_messages":
                    message.setdefault("role", role)
                lists.setdefault(column, []).append(message)
        for column, messages in lists.items():
            found[column][row] = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    return {column: pa.array(values, pa.string()) for column, values in found.items()}


def _span_or_resource(attributes: _Lookup, resource_attributes: _Lookup, keys: tuple[str, ...]) -> pa.Array | None:
    found = [attributes.non_empty(key) for key in keys] + [resource_attributes.non_empty(key) for key in keys]
    return _coalesce(found)


def _percent_encoded(values: pa.Array) -> pa.Array:
    """Each value with `/` and `%` (everything but unreserved characters) percent-encoded, so joining with `/`
    stays unambiguous; computed once per distinct value (tenants and services are few)."""
    distinct = pc.unique(values)
    encoded = pa.array([quote(value, safe="") for value in distinct.to_pylist()], pa.string())
    return pc.take(encoded, pc.index_in(values, value_set=distinct))


def _span_types(entry_type: pa.Array, tool_name: pa.Array, attributes: _Lookup, scopes: pa.Array) -> pa.Array:
    """Types the spans decoding left generic from the families' own span kinds."""
    untyped = conv.SpanTypeValues.SPAN.value
    for family in FAMILIES:
        if family.scope and family.run_needs:
            named = [attributes.non_empty(key) for key in family.run_needs]
            present = [pc.is_valid(found) for found in named if found is not None]
            wrapper = pc.and_(pc.equal(scopes, family.scope), pc.equal(entry_type, conv.SpanTypeValues.RUN.value))
            unnamed = pc.and_(wrapper, pc.invert(functools.reduce(pc.or_, present))) if present else wrapper
            entry_type = pc.if_else(unnamed, untyped, entry_type)
        for key, mapping in family.span_kinds.items():
            found = attributes.first(key)
            if found is None:
                continue
            kinds = pc.utf8_upper(pc.fill_null(found, ""))
            positions = pc.index_in(kinds, value_set=pa.array(list(mapping), pa.string()))
            candidate = pc.take(pa.array(list(mapping.values()), pa.string()), positions)
            entry_type = pc.if_else(
                pc.and_(pc.equal(entry_type, untyped), pc.is_valid(candidate)), candidate, entry_type
            )
        for key, span_type in family.kind_when_present.items():
            found = attributes.non_empty(key)
            if found is None:
                continue
            present = pc.is_valid(found)
            entry_type = pc.if_else(pc.and_(pc.equal(entry_type, untyped), present), span_type, entry_type)
    # A span that names the tool it runs (pydantic-ai's `running tool`) is a tool call.
    names_tool = pc.not_equal(tool_name, "")
    return pc.if_else(
        pc.and_(pc.equal(entry_type, untyped), names_tool), conv.SpanTypeValues.TOOL_CALL.value, entry_type
    )


def _span_names(names: pa.Array, attributes: _Lookup, operation: pa.Array, model: pa.Array) -> pa.Array:
    """Logfire names spans by their message template (`Chat Completion with {request_data[model]!r}`): the
    rendered message replaces it, else (no rendered message) the GenAI name `{operation} {model}`."""
    for family in FAMILIES:
        if family.rendered_name and family.name_template:
            rendered = attributes.non_empty(family.rendered_name)
            if rendered is None:  # no span has a rendered message: nothing to replace
                continue
            found_template = attributes.first(family.name_template)
            template = pc.fill_null(found_template, "") if found_template is not None else pa.scalar("", pa.string())
            # pydantic-ai's `invoke_agent x` renders as `x run`: a name that is no template stays.
            templated = pc.or_(pc.equal(names, template), pc.match_substring(names, "{"))
            names = pc.if_else(pc.and_(templated, pc.is_valid(rendered)), rendered, names)
    templated = pc.match_substring(names, "{")
    genai_name = pc.binary_join_element_wise(operation, model, " ")
    usable = pc.and_(templated, pc.and_(pc.not_equal(operation, ""), pc.not_equal(model, "")))
    return pc.if_else(usable, genai_name, names)


def _nested_messages(messages: pa.Array) -> pa.Array:
    """Messages whose members still carry flattened list keys (`tool_calls.0.tool_call.function.name`) as
    nested objects (`"tool_calls": [{"function": {"name": ...}}]`), as OTel GenAI and Phoenix read them.
    Only rows with such keys are parsed (they are the model's tool-call turns)."""
    dotted = pc.fill_null(pc.match_substring_regex(messages, _DOTTED_INDEX), False)
    if not pc.any(dotted).as_py():
        return messages
    rows = np.flatnonzero(dotted.to_numpy(zero_copy_only=False))
    values = messages.to_pylist()
    for row in rows:
        try:
            parsed = json.loads(values[row])
        except ValueError:
            continue
        if isinstance(parsed, list):
            nested = [_nest(item) if isinstance(item, dict) else item for item in parsed]
            values[row] = json.dumps(nested, ensure_ascii=False, separators=(",", ":"))
    return pa.array(values, pa.string())


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        path: list[str] = []
        for index, part in enumerate(parts):
            # `tool_calls.0.tool_call.id`: the item name after an index says nothing the list name does not.
            if index and parts[index - 1].isdigit() and part in ITEM_NAMES and index < len(parts) - 1:
                continue
            path.append(part)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if path[-1] not in node:
                node[path[-1]] = value
                continue
        tree[key] = value  # a clash (`a` and `a.b` both set): keep the flat key
    nested: dict[str, Any] = _lists(tree)
    return nested


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _tool_calls_of(messages: str) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of each tool call in a JSON message list, whichever family's shape it has."""
    try:
        parsed = json.loads(messages)
    except ValueError:
        return []
    calls: list[tuple[str, str, str]] = []
    for message in parsed if isinstance(parsed, list) else []:
        if not isinstance(message, dict):
            continue
        parts = [part for part in message.get("parts") or [] if isinstance(part, dict)]
        items = [*(message.get("tool_calls") or []), *(part for part in parts if part.get("type") == "tool_call")]
        for item in items:
            if not isinstance(item, dict):
                continue
            function: dict[str, Any] = item["function"] if isinstance(item.get("function"), dict) else {}
            name = item.get("name") or function.get("name") or ""
            arguments = item.get("arguments", function.get("arguments", ""))
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, sort_keys=True)
            if item.get("id"):
                calls.append((str(item["id"]), str(name), arguments))
    return calls


def _same_arguments(left: str, right: str) -> bool:
    try:
        return bool(json.loads(left) == json.loads(right))
    except ValueError:
        return left == right


def _tool_call_ids_from_trace(
    trace_ids: pa.Array, is_tool_call: pa.Array, tool_call_ids: pa.Array, tool_names: pa.Array,
    tool_arguments: pa.Array, is_prompt: pa.Array, output_messages: pa.Array,
) -> pa.Array:  # fmt: skip
    """A tool span that names no call id takes the id of the model's tool call it runs, from a prompt span of
    its trace in the batch: the one call of that name, or of that name and the same arguments."""
    missing = pc.and_(is_tool_call, pc.equal(tool_call_ids, ""))
    if not pc.any(missing).as_py():
        return tool_call_ids
    answered = pc.and_(is_prompt, pc.match_substring(output_messages, "tool_call"))
    if not pc.any(answered).as_py():  # no model turn in the batch names a tool call
        return tool_call_ids
    wanted = np.flatnonzero(missing.to_numpy(zero_copy_only=False))
    traces = trace_ids.to_pylist()
    wanted_traces = {traces[row] for row in wanted}
    calls: dict[str, list[tuple[str, str, str]]] = {}
    prompts = np.flatnonzero(answered.to_numpy(zero_copy_only=False))
    for row in prompts:
        if traces[row] in wanted_traces:
            calls.setdefault(traces[row], []).extend(_tool_calls_of(output_messages[row].as_py()))
    if not calls:
        return tool_call_ids
    ids = tool_call_ids.to_pylist()
    for row in wanted:
        name, arguments = tool_names[row].as_py(), tool_arguments[row].as_py()
        named = [call for call in calls.get(traces[row], []) if call[1] == name]
        if len({call[0] for call in named}) > 1:
            named = [call for call in named if _same_arguments(call[2], arguments)]
        if len({call[0] for call in named}) == 1:
            ids[row] = named[0][0]
    return pa.array(ids, pa.string())


def _map_with_renamed(attributes: pa.MapArray, old: str, new: str) -> pa.MapArray:
    """Adds `new` with `old`'s value to each row that has `old` and no `new` (the old key stays)."""
    old_values = pc.map_lookup(attributes, old, "first")
    add = pc.and_(pc.is_valid(old_values), pc.is_null(pc.map_lookup(attributes, new, "first")))
    if not pc.any(add).as_py():
        return attributes
    num_rows = len(attributes)
    as_list = pa.ListArray.from_arrays(attributes.offsets, attributes.values)
    entries = pc.list_flatten(as_list)
    added_rows = pc.filter(pa.array(np.arange(num_rows, dtype=np.int64)), add)
    parents = pa.concat_arrays([pc.cast(pc.list_parent_indices(as_list), pa.int64()), added_rows])
    keys = pa.concat_arrays([entries.field("key"), pa.array([new] * len(added_rows), pa.string())])
    values = pa.concat_arrays([entries.field("value"), pc.filter(old_values, add)])
    order = pc.sort_indices(parents)  # stable: each row keeps its own entries' order
    counts = np.bincount(pc.take(parents, order).to_numpy(), minlength=num_rows)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)]).astype(np.int32)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pc.take(keys, order), pc.take(values, order), type=attributes.type
    )


def _array(batch: SpanBatch, column: str) -> pa.Array:
    return batch.column(column).combine_chunks()


def _non_empty(values: pa.Array) -> pa.Array:
    """Empty strings as nulls, so coalesce() skips them."""
    return pc.if_else(pc.equal(pc.fill_null(values, ""), ""), pa.scalar(None, pa.string()), values)


def _fill_string(current: pa.Array, candidate: pa.Array | None) -> pa.Array:
    """`current` where it is non-empty, else `candidate` where that is non-empty, else ''. None: no candidate."""
    if candidate is None:
        return current
    candidate = pc.fill_null(candidate, "")
    return pc.if_else(pc.equal(current, ""), candidate, current)


def _fill_int(current: pa.Array, candidate: pa.Array | None) -> pa.Array:
    if candidate is None:
        return current
    return pc.if_else(pc.and_(pc.equal(current, 0), pc.is_valid(candidate)), candidate, current)


class _Lookup:
    """A batch's map column and the keys its maps hold: a key no span has gives None rather than an all-null
    column, so the normaliser skips every step on it (a batch carries few of the families' many keys)."""

    def __init__(self, maps: pa.MapArray) -> None:
        self.maps = maps
        # Every key of the child array: of a sliced column, a superset of what its rows hold, which is safe.
        self.keys: frozenset[str] = frozenset(pc.unique(maps.keys).to_pylist())

    def first(self, key: str) -> pa.Array | None:
        """Each row's first value of `key` (null where absent), None when no map has it."""
        return pc.map_lookup(self.maps, key, "first") if key in self.keys else None

    def non_empty(self, key: str) -> pa.Array | None:
        """first(), with empty values as nulls."""
        found = self.first(key)
        return None if found is None else _non_empty(found)


def _coalesce(candidates: list[pa.Array | None]) -> pa.Array | None:
    present = [candidate for candidate in candidates if candidate is not None]
    return pc.coalesce(*present) if present else None


def _first_value(attributes: _Lookup, keys: tuple[str, ...]) -> pa.Array | None:
    return _coalesce([attributes.non_empty(key) for key in keys])


def _first_int(attributes: _Lookup, keys: tuple[str, ...]) -> pa.Array | None:
    text = _first_value(attributes, keys)
    if text is None:
        return None
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
