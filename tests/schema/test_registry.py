"""The conventions registry: generated files are fresh, and a broken registry fails with a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from agentledger.schema import conventions as conv
from agentledger.schema.codegen import render_constants, render_presentation, stale_files
from agentledger.schema.presentation import REPORT_DETAILS, TIMELINE_DETAILS
from agentledger.schema.registry_model import RegistryError, load_registry
from agentledger.schema.span_columns import SPAN_SCHEMA
from tests.conftest import REPO_ROOT

_ATTRIBUTE = """
  - key: {key}
    type: string
    stability: development
    brief: test
    examples: ["x"]
    annotations: {{agentledger: {{origin: {origin}}}}}
"""


def _write_registry(directory: Path, body: str) -> Path:
    directory.mkdir()
    (directory / "a.yaml").write_text("file_format: definition/2\nattributes:" + body)
    return directory


def test_generated_constants_and_reference_are_fresh() -> None:
    assert stale_files(REPO_ROOT / "schema", REPO_ROOT / "schema" / "registry") == []


def test_a_registry_edit_makes_the_generated_files_stale(tmp_path: Path) -> None:
    registry = _write_registry(tmp_path / "registry", _ATTRIBUTE.format(key="agentledger.a.b", origin="agentledger"))
    (tmp_path / "conventions.py").write_text(render_constants(load_registry(registry)))

    assert stale_files(tmp_path, registry) == ["REFERENCE.md", "presentation.py"]
    (registry / "a.yaml").write_text((registry / "a.yaml").read_text().replace("agentledger.a.b", "agentledger.a.c"))
    assert stale_files(tmp_path, registry) == ["conventions.py", "REFERENCE.md", "presentation.py"]


def test_run_id_key_is_fixed() -> None:
    assert conv.AGENT_RUN_ID == "agent.run.id"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_ATTRIBUTE.format(key="input.value", origin="agentledger"), "input.value is an OpenInference key"),
        (
            _ATTRIBUTE.format(key="agentledger.x.y", origin="agentledger") * 2,
            "agentledger.x.y is also defined in a.yaml",
        ),
        (_ATTRIBUTE.format(key="myco.thing", origin="agentledger"), "our own keys live under agentledger.*"),
        (_ATTRIBUTE.format(key="agentledger.z", origin="otel-genai"), "origin otel-genai needs a gen_ai.* key"),
        (_ATTRIBUTE.format(key="Bad Key", origin="agentledger"), "is not a dotted lower-case name"),
    ],
)
def test_inconsistent_registry_fails_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(RegistryError) as error:
        load_registry(_write_registry(tmp_path / "registry", body))

    assert message in str(error.value)


def test_span_referring_to_an_unknown_attribute_fails(tmp_path: Path) -> None:
    registry = _write_registry(tmp_path / "registry", _ATTRIBUTE.format(key="agentledger.a.b", origin="agentledger"))
    with (registry / "a.yaml").open("a") as handle:
        handle.write(
            "spans:\n  - type: agentledger.x\n    attributes:\n"
            "      - {ref: agentledger.nope, requirement_level: required}\n"
        )

    with pytest.raises(RegistryError) as error:
        load_registry(registry)

    assert "span agentledger.x refers to unknown attribute agentledger.nope" in str(error.value)


def test_every_registry_column_exists_in_the_migrated_spans_table_with_the_arrow_schema(client: Client) -> None:
    table = {
        name: type_
        for name, type_ in client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'spans'"
        ).result_rows
    }
    arrow_columns = SPAN_SCHEMA.names

    for attribute in load_registry().attributes:
        if attribute.column is not None:
            assert attribute.column in table, attribute.key
    # The batch every stage passes is exactly the table minus what storage adds (ingest time, retention, holds).
    assert sorted(arrow_columns) == sorted(set(table) - {"ingested_at", "retain_until", "legal_hold"})
    codecs = dict(
        client.query(
            "SELECT name, compression_codec FROM system.columns WHERE database = currentDatabase() AND table = 'spans'"
        ).result_rows
    )
    content_columns = [a.column for a in load_registry().attributes if a.column_kind == "content"]
    assert sorted(content_columns) == sorted(
        ["input_value", "output_value", "system_instructions", "input_messages", "output_messages",
         "tool_arguments", "tool_result", "retrieval_documents"]
    )  # fmt: skip
    for column in content_columns:
        assert (table[column], codecs[column]) == ("String", "CODEC(ZSTD(3))")
    assert table["attributes"] == "Map(LowCardinality(String), String)"


def _registry_copy_with(tmp_path: Path, edit: tuple[str, str]) -> Path:
    """The real registry copied, with one presentation edit (old text -> new text)."""
    registry = tmp_path / "registry"
    registry.mkdir()
    for source in (REPO_ROOT / "schema" / "registry").glob("*.yaml"):
        (registry / source.name).write_text(source.read_text())
    presentation = registry / "presentation.yaml"
    old, new = edit
    assert old in presentation.read_text()
    presentation.write_text(presentation.read_text().replace(old, new, 1))
    return registry


def test_a_typed_detail_added_in_the_registry_reaches_the_timeline_report_and_page(tmp_path: Path) -> None:
    # agentledger.tool.cost has no column: the timeline reads it from the span's attributes.
    registry = _registry_copy_with(
        tmp_path,
        (
            "      - {name: result, ref: gen_ai.tool.call.result, render: content}\n",
            "      - {name: result, ref: gen_ai.tool.call.result, render: content}\n"
            "      - {name: cost, ref: agentledger.tool.cost}\n",
        ),
    )
    text = render_presentation(load_registry(registry))
    namespace: dict[str, object] = {}
    exec(compile(text, "presentation.py", "exec"), namespace)

    tool_details = namespace["TIMELINE_DETAILS"]["tool_call"]  # type: ignore[index]
    at = [name for name, _ in tool_details].index("result")
    assert tool_details[at : at + 2] == (("result", "tool_result"), ("cost", "@agentledger.tool.cost"))
    assert namespace["PAGE_FIELDS"]["tool_call"][at + 1] == ("cost", "text")  # type: ignore[index]
    assert TIMELINE_DETAILS["tool_call"][at] == ("result", "tool_result")
    assert REPORT_DETAILS["tool_call"] == ("tool_name", "tool_call_id", "access", "target", "influenced_by")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            (
                "      - {name: reason, ref: agentledger.policy.reason}\n",
                "      - {name: reason, ref: agentledger.nope}\n",
            ),
            "presentation.policy_decision.details.reason refers to unknown attribute agentledger.nope",
        ),
        (
            ("{name: model, ref: gen_ai.request.model}", "{name: model, ref: gen_ai.request.model, render: neon}"),
            "presentation.prompt.details.model: render must be one of text, content",
        ),
        (
            ("    report: [model, context_hash, provenance]", "    report: [model, price]"),
            "presentation.prompt.report: must list names among its details",
        ),
        (
            ("  downstream_write:\n", "  downstream_wrte:\n"),
            "presentation.downstream_wrte is not a span type of the registry",
        ),
        (
            ("{name: approver, ref: agentledger.approval.approver}", "{name: approver, field: approver}"),
            "presentation.approval.details.approver: `field` is for write entries only",
        ),
        (
            ("{name: system, field: system}", "{name: system, field: system, ref: agentledger.write.system}"),
            "presentation.write.details.system: give exactly one of `ref` (attribute) and `field` (write)",
        ),
    ],
)
def test_inconsistent_presentation_fails_naming_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    registry = _registry_copy_with(tmp_path, edit)

    with pytest.raises(RegistryError) as error:
        load_registry(registry)

    assert message in str(error.value)
