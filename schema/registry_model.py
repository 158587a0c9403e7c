"""The semantic-convention registry (schema/registry/*.yaml, OTel Weaver `definition/2` shape) as typed objects.

Loading validates the registry, so a broken YAML file fails code generation and the staleness test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REGISTRY_DIR = Path(__file__).resolve().parent / "registry"

COLUMN_KINDS = ("string", "int", "content")
ORIGINS = ("agentledger", "otel-genai", "openinference")
REQUIREMENT_LEVELS = ("required", "conditionally_required", "recommended", "opt_in")
# How the responder page renders a detail (schema/registry/presentation.yaml).
RENDERINGS = ("text", "content", "messages", "documents", "labels", "hash", "tokens")
# Timeline types that are no span type of the registry: `span` (any other span) and `write` (a stored
# downstream write record).
BUILT_IN_TYPES = ("span", "write")
SCALAR_TYPES = ("string", "int", "double", "boolean", "string[]", "int[]", "double[]", "boolean[]")

# OpenInference keys that mean something else than what a producer of our namespace might think.
# Our own keys must never take one of these names (checked below); the registry may only list them
# with origin `openinference`, meaning "read as OpenInference defines them".
OPENINFERENCE_KEYS = frozenset(
    {
        "openinference.span.kind",
        "input.value",
        "input.mime_type",
        "output.value",
        "output.mime_type",
        "session.id",
        "user.id",
        "metadata",
        "tag.tags",
        "tool.name",
        "tool.description",
        "tool.parameters",
        "llm.model_name",
        "llm.provider",
        "llm.system",
        "agent.name",
        "graph.node.id",
        "graph.node.name",
        "graph.node.parent_id",
    }
)

_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_COLUMN_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class RegistryError(ValueError):
    """The registry YAML is inconsistent; the message names the file and key."""


@dataclass(frozen=True)
class EnumMember:
    id: str
    value: str
    brief: str


@dataclass(frozen=True)
class Attribute:
    key: str
    type: str  # a scalar type name, or "enum"
    brief: str
    note: str
    stability: str
    examples: tuple[object, ...]
    members: tuple[EnumMember, ...]
    column: str | None
    column_kind: str | None
    origin: str
    source_file: str


@dataclass(frozen=True)
class AttributeRef:
    ref: str
    requirement_level: str


@dataclass(frozen=True)
class SpanDefinition:
    type: str
    kind: str
    name_note: str
    brief: str
    attributes: tuple[AttributeRef, ...]
    source_file: str


@dataclass(frozen=True)
class DetailField:
    """One typed detail of a timeline type: where it is read from and how the page renders it."""

    name: str
    ref: str | None  # a registry attribute key (span entries)
    field: str | None  # a stored write record's field (`write` entries)
    render: str


@dataclass(frozen=True)
class Presentation:
    """What one timeline type shows (schema/registry/presentation.yaml)."""

    type: str
    details: tuple[DetailField, ...]
    report: tuple[str, ...]
    summary: tuple[str, ...]
    source_file: str


@dataclass(frozen=True)
class Registry:
    attributes: tuple[Attribute, ...]
    spans: tuple[SpanDefinition, ...]
    presentation: tuple[Presentation, ...] = ()

    def attribute(self, key: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.key == key:
                return attribute
        raise KeyError(key)


def load_registry(directory: Path = REGISTRY_DIR) -> Registry:
    attributes: list[Attribute] = []
    spans: list[SpanDefinition] = []
    presentation: list[Presentation] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RegistryError(f"no registry files (*.yaml) in {directory}")
    for path in files:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("file_format") != "definition/2":
            raise RegistryError(f"{path.name}: expected `file_format: definition/2` at the top")
        for raw in document.get("attributes") or []:
            attributes.append(_parse_attribute(raw, path.name))
        for raw in document.get("spans") or []:
            spans.append(_parse_span(raw, path.name))
        for span_type, raw in (document.get("presentation") or {}).items():
            presentation.append(_parse_presentation(str(span_type), raw, path.name))
    registry = Registry(tuple(sorted(attributes, key=lambda a: a.key)), tuple(spans), tuple(presentation))
    _validate(registry)
    return registry


def _parse_attribute(raw: dict[str, Any], source: str) -> Attribute:
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY_PATTERN.match(key):
        raise RegistryError(f"{source}: attribute key {key!r} is not a dotted lower-case name")
    raw_type = raw.get("type")
    members: tuple[EnumMember, ...] = ()
    if isinstance(raw_type, dict):
        members = tuple(
            EnumMember(id=str(m["id"]), value=str(m["value"]), brief=str(m.get("brief", "")))
            for m in raw_type.get("members") or []
        )
        if not members:
            raise RegistryError(f"{source}: {key}: an enum type needs `members`")
        type_name = "enum"
    elif isinstance(raw_type, str) and raw_type in SCALAR_TYPES:
        type_name = raw_type
    else:
        raise RegistryError(f"{source}: {key}: unknown type {raw_type!r}")
    for field in ("brief", "stability"):
        if not isinstance(raw.get(field), str) or not raw[field].strip():
            raise RegistryError(f"{source}: {key}: `{field}` is required")
    examples = raw.get("examples")
    if not isinstance(examples, list) or not examples:
        raise RegistryError(f"{source}: {key}: `examples` must be a non-empty list")
    ours = ((raw.get("annotations") or {}).get("agentledger")) or {}
    column = ours.get("column")
    column_kind = ours.get("column_kind")
    if (column is None) != (column_kind is None):
        raise RegistryError(f"{source}: {key}: `column` and `column_kind` go together")
    if column is not None and not _COLUMN_PATTERN.match(str(column)):
        raise RegistryError(f"{source}: {key}: column name {column!r} is not a plain identifier")
    if column_kind is not None and column_kind not in COLUMN_KINDS:
        raise RegistryError(f"{source}: {key}: column_kind must be one of {', '.join(COLUMN_KINDS)}")
    origin = str(ours.get("origin", "agentledger"))
    if origin not in ORIGINS:
        raise RegistryError(f"{source}: {key}: origin must be one of {', '.join(ORIGINS)}")
    return Attribute(
        key=key,
        type=type_name,
        brief=raw["brief"].strip(),
        note=str(raw.get("note", "")).strip(),
        stability=raw["stability"],
        examples=tuple(examples),
        members=members,
        column=str(column) if column is not None else None,
        column_kind=str(column_kind) if column_kind is not None else None,
        origin=origin,
        source_file=source,
    )


def _parse_span(raw: dict[str, Any], source: str) -> SpanDefinition:
    span_type = raw.get("type")
    if not isinstance(span_type, str):
        raise RegistryError(f"{source}: a span definition needs `type`")
    refs = []
    for item in raw.get("attributes") or []:
        level = item.get("requirement_level")
        if level not in REQUIREMENT_LEVELS:
            raise RegistryError(
                f"{source}: {span_type}: requirement_level {level!r} is not one of {REQUIREMENT_LEVELS}"
            )
        refs.append(AttributeRef(ref=str(item.get("ref")), requirement_level=level))
    return SpanDefinition(
        type=span_type,
        kind=str(raw.get("kind", "internal")),
        name_note=str((raw.get("name") or {}).get("note", "")),
        brief=str(raw.get("brief", "")),
        attributes=tuple(refs),
        source_file=source,
    )


def _parse_presentation(span_type: str, raw: Any, source: str) -> Presentation:
    where = f"{source}: presentation.{span_type}"
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a mapping with `details`, `report` and `summary`")
    details = []
    for item in raw.get("details") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RegistryError(f"{where}.details: every detail needs a `name`")
        name = item["name"]
        ref, record_field = item.get("ref"), item.get("field")
        if (ref is None) == (record_field is None):
            raise RegistryError(f"{where}.details.{name}: give exactly one of `ref` (attribute) and `field` (write)")
        render = str(item.get("render", "text"))
        if render not in RENDERINGS:
            raise RegistryError(f"{where}.details.{name}: render must be one of {', '.join(RENDERINGS)}")
        details.append(
            DetailField(
                name=name,
                ref=str(ref) if ref is not None else None,
                field=str(record_field) if record_field is not None else None,
                render=render,
            )
        )
    names = [detail.name for detail in details]
    if len(set(names)) != len(names):
        raise RegistryError(f"{where}.details: a detail name appears twice")
    lists = {}
    for key in ("report", "summary"):
        value = raw.get(key) or []
        if not isinstance(value, list) or any(name not in names for name in value):
            raise RegistryError(f"{where}.{key}: must list names among its details ({', '.join(names)})")
        lists[key] = tuple(str(name) for name in value)
    return Presentation(span_type, tuple(details), lists["report"], lists["summary"], source)


def _validate(registry: Registry) -> None:
    seen: dict[str, str] = {}
    columns: dict[str, str] = {}
    for attribute in registry.attributes:
        if attribute.key in seen:
            raise RegistryError(f"{attribute.source_file}: {attribute.key} is also defined in {seen[attribute.key]}")
        seen[attribute.key] = attribute.source_file
        if attribute.key in OPENINFERENCE_KEYS and attribute.origin != "openinference":
            raise RegistryError(
                f"{attribute.source_file}: {attribute.key} is an OpenInference key with its own meaning;"
                " list it only with origin openinference"
            )
        if attribute.origin == "otel-genai" and not attribute.key.startswith("gen_ai."):
            raise RegistryError(f"{attribute.source_file}: {attribute.key}: origin otel-genai needs a gen_ai.* key")
        if attribute.origin == "agentledger" and not (
            attribute.key.startswith("agentledger.") or attribute.key == "agent.run.id"
        ):
            raise RegistryError(
                f"{attribute.source_file}: {attribute.key}: our own keys live under agentledger.*"
                " (agent.run.id excepted)"
            )
        if attribute.column is not None:
            if attribute.column in columns:
                raise RegistryError(
                    f"{attribute.source_file}: column {attribute.column} is used by {columns[attribute.column]}"
                    f" and {attribute.key}"
                )
            columns[attribute.column] = attribute.key
    for span in registry.spans:
        for ref in span.attributes:
            if ref.ref not in seen:
                raise RegistryError(f"{span.source_file}: span {span.type} refers to unknown attribute {ref.ref}")
    known_types = {span.type.removeprefix("agentledger.") for span in registry.spans} | set(BUILT_IN_TYPES)
    shown: set[str] = set()
    for view in registry.presentation:
        if view.type not in known_types:
            raise RegistryError(f"{view.source_file}: presentation.{view.type} is not a span type of the registry")
        if view.type in shown:
            raise RegistryError(f"{view.source_file}: presentation.{view.type} is defined twice")
        shown.add(view.type)
        for detail in view.details:
            if detail.ref is not None and detail.ref not in seen:
                raise RegistryError(
                    f"{view.source_file}: presentation.{view.type}.details.{detail.name} refers to unknown"
                    f" attribute {detail.ref}"
                )
            if detail.field is not None and view.type != "write":
                raise RegistryError(
                    f"{view.source_file}: presentation.{view.type}.details.{detail.name}: `field` is for"
                    " write entries only"
                )
