"""Redaction through the real collector: spans built with the OTel SDK, encoded by its OTLP exporter's encoder,
posted to the OTLP/HTTP receiver, stored in chDB; the stored rows hold none of the planted values."""

from __future__ import annotations

import json
import random
import re
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, StatusCode, TraceFlags
from pydantic import SecretStr
from starlette.testclient import TestClient

from agentledger.collector.config import HttpProtocolConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.schema import conventions as conv
from tests.collector.redaction_corpus import STRUCTURED_ENTITIES, HardNegatives, PiiFactory
from tests.conftest import otlp_ingest, start_service, wait_for_timeline

PROTOBUF = {"Content-Type": "application/x-protobuf"}
CONTEXT_HASH = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ARGUMENTS_HASH = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
SEPARATORS = (", ", " and ", "\n", "; ", " | ", "\t", " (", ") ")


def _planted(seed: int) -> dict[str, tuple[str, str]]:
    """entity -> (text to plant, the sensitive part that must never be stored)."""
    factory = PiiFactory(random.Random(seed))
    planted = {}
    for entity in STRUCTURED_ENTITIES:
        if entity == "secret":
            before, secret, after = factory.secret()
            planted[entity] = (before + secret + after, secret)
        else:
            value = getattr(factory, entity)()
            planted[entity] = (value, value)
    return planted


def _text(planted: dict[str, tuple[str, str]], order: list[str], separators: list[str]) -> str:
    parts = []
    for index, entity in enumerate(order):
        parts.append(planted[entity][0])
        parts.append(separators[index % len(separators)])
    return "".join(parts)


def _spans(run_id: str, text: str, negative: str) -> list[ReadableSpan]:
    """Two spans carrying `text` in every place a span can: name, status, attributes of every kind, event names
    and attributes, link attributes, resource attributes, promoted and content columns."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "redaction-test", "host.note": text}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    linked = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, False, TraceFlags(1))
    for index in range(2):
        with tracer.start_as_current_span(
            f"execute_tool {text}",
            links=[Link(linked, {"link.note": text})],
            attributes={
                conv.AGENT_RUN_ID: run_id,
                conv.AGENTLEDGER_PROMPT_CONTEXT_HASH: CONTEXT_HASH,
                conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: ARGUMENTS_HASH,
                conv.GEN_AI_OPERATION_NAME: "execute_tool",
                conv.AGENTLEDGER_TOOL_TARGET: text,
                conv.AGENTLEDGER_APPROVAL_APPROVER: text,
                conv.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps({"query": text, "nested": [{"note": text}]}),
                conv.GEN_AI_INPUT_MESSAGES: json.dumps([{"role": "user", "parts": [{"content": text}]}]),
                "input.value": text,
                "output.value": text,
                conv.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps([{"type": "text", "content": text}]),
                conv.GEN_AI_OUTPUT_MESSAGES: json.dumps([{"role": "assistant", "parts": [{"content": text}]}]),
                conv.GEN_AI_TOOL_CALL_RESULT: text,
                conv.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps([{"id": "kb:1", "content": text}]),
                "app.note": text,
                "app.notes": [text, text],
                "app.reference": negative,
                "app.index": index,
            },
        ) as span:
            span.add_event(f"received {text}", {"exception.message": text, "exception.lines": [text]})
            span.set_status(StatusCode.ERROR, text)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _stored(client: Client, run_id: str) -> list[dict[str, object]]:
    result = client.query("SELECT * FROM spans WHERE run_id = {run_id:String}", parameters={"run_id": run_id})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _leaks(stored: str, sensitive: str) -> list[str]:
    """Fragments of `sensitive` found in `stored`: the whole value, and each line of a multi-line one (stored
    JSON escapes its newlines), bounded so a short value cannot match inside an unrelated longer one."""
    fragments = {sensitive, *(line for line in sensitive.splitlines() if len(line) >= 8)}
    return [
        fragment
        for fragment in fragments
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(fragment)}(?![0-9A-Za-z])", stored) is not None
    ]


def _collector(client: Client, config: RedactionConfig) -> TestClient:
    pipeline = Pipeline([RedactionProcessor(config)], [("clickhouse", ClickHouseExporter(client))])
    return TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, CollectorTelemetry())))


PSEUDONYMS = RedactionConfig(default_mode="pseudonym", hmac_key=SecretStr("test-key-" + "0" * 32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    order=st.permutations(list(STRUCTURED_ENTITIES)),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=4),
    pseudonymise=st.booleans(),
)
def test_planted_pii_of_every_type_in_every_position_never_reaches_clickhouse(
    client: Client, seed: int, order: list[str], separators: list[str], pseudonymise: bool
) -> None:
    planted = _planted(seed)
    negative = HardNegatives(random.Random(seed)).any()
    run_id = f"run_redaction_{uuid.uuid4().hex}"  # hypothesis replays examples; each needs its own rows
    body = encode_spans(_spans(run_id, _text(planted, order, separators), negative)).SerializeToString()
    collector = _collector(client, PSEUDONYMS if pseudonymise else RedactionConfig())

    assert collector.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200

    rows = _stored(client, run_id)
    assert len(rows) == 2
    stored = repr(rows)
    for entity, (_, sensitive) in planted.items():
        assert _leaks(stored, sensitive) == [], entity
    for row in rows:
        # Correlation ids and the emitter's hashes are never altered; a hard negative survives verbatim.
        assert (row["run_id"], row["context_hash"], row["arguments_hash"]) == (run_id, CONTEXT_HASH, ARGUMENTS_HASH)
        attributes = row["attributes"]
        assert isinstance(attributes, dict)
        assert attributes["app.reference"] == negative
        json.loads(str(row["tool_arguments"]))
        json.loads(str(attributes["app.notes"]))
        summary = json.loads(attributes[conv.AGENTLEDGER_REDACTION_SUMMARY])
        assert set(summary) == set(STRUCTURED_ENTITIES)
    if pseudonymise:
        for entity in STRUCTURED_ENTITIES:
            # One planted value per entity, in ~15 places over two spans: one pseudonym for all of them.
            assert len(set(re.findall(rf"<{entity}:[0-9a-f]{{12}}>", stored))) == 1, entity
    else:
        for entity in STRUCTURED_ENTITIES:
            assert f"[{entity.upper()}]" in stored


def test_kvlist_and_array_values_are_redacted_inside_their_json(client: Client) -> None:
    # The SDK cannot send kvlists; other SDKs and collectors can, and the receiver stores them as JSON.
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "lookup"
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_000_000_100
    span.attributes.add(key=conv.AGENT_RUN_ID).value.string_value = "run_kvlist"
    customer = span.attributes.add(key="app.customer").value.kvlist_value
    customer.values.add(key="email").value.string_value = "jane.doe@example.com"
    cards = customer.values.add(key="cards").value.array_value
    cards.values.add().string_value = "4111 1111 1111 1111"
    cards.values.add().int_value = 7
    collector = _collector(client, RedactionConfig())

    assert collector.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF).status_code == 200

    (row,) = _stored(client, "run_kvlist")
    attributes = row["attributes"]
    assert isinstance(attributes, dict)
    assert json.loads(attributes["app.customer"]) == {"email": "[EMAIL]", "cards": ["[CARD]", 7]}
    assert json.loads(attributes[conv.AGENTLEDGER_REDACTION_SUMMARY]) == {"card": 1, "email": 1}


@pytest.mark.slow
def test_agentledger_up_redacts_by_default_what_the_sdk_exporter_sends(tmp_path: Path) -> None:
    from tests.conftest import sdk_tracer_provider

    service = start_service(tmp_path / "data")
    try:
        provider = sdk_tracer_provider(service.collector_url)
        with provider.get_tracer("tests").start_as_current_span(
            "execute_tool notify",
            attributes={
                conv.AGENT_RUN_ID: "run_up_redaction",
                conv.GEN_AI_OPERATION_NAME: "execute_tool",
                conv.GEN_AI_TOOL_NAME: "notify",
                conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: ARGUMENTS_HASH,
                conv.GEN_AI_TOOL_CALL_ARGUMENTS: '{"to": "jane.doe@example.com", "card": "4111 1111 1111 1111"}',
            },
        ):
            pass
        provider.shutdown()
        # Acknowledged means spooled: the export to ClickHouse follows asynchronously.
        timeline = wait_for_timeline(service.api_url, "run_up_redaction", 1)
    finally:
        assert service.stop() == 0
    (entry,) = timeline["entries"]
    assert entry["details"]["arguments"] == '{"to": "[EMAIL]", "card": "[CARD]"}'
    assert entry["details"]["arguments_hash"] == ARGUMENTS_HASH
