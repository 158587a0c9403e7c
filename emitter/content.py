"""How the emitter encodes content: chat messages and documents in OTel GenAI's JSON shapes and as
OpenInference's flattened attributes, and arbitrary Python values as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from opentelemetry.util.types import AttributeValue

from agentledger.schema import openinference as oi
from agentledger.schema.canonical import CanonicalJsonError, JsonValue, canonicalize

Attributes = dict[str, AttributeValue]


class Message(TypedDict):
    """A chat message as the agent sent or received it."""

    role: str
    content: str


@dataclass(frozen=True)
class Document:
    """A retrieved document; `content` is recorded only with full content capture."""

    id: str
    content: str = ""
    score: float | None = None


def json_text(value: JsonValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def messages_json(messages: Sequence[Message]) -> list[JsonValue]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def genai_messages(messages: Sequence[Message]) -> str:
    # OTel GenAI's message shape: a role and a list of typed parts.
    return json_text([{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]} for m in messages])


def openinference_messages(prefix: str, messages: Sequence[Message]) -> Attributes:
    attributes: Attributes = {}
    for index, message in enumerate(messages):
        attributes[oi.flattened_key(prefix, index, oi.MESSAGE_ITEM, "role")] = message["role"]
        attributes[oi.flattened_key(prefix, index, oi.MESSAGE_ITEM, "content")] = message["content"]
    return attributes


def document_json(document: Document) -> JsonValue:
    value: dict[str, JsonValue] = {"id": document.id, "content": document.content}
    if document.score is not None:
        value["score"] = document.score
    return value


def json_or_text(value: object) -> JsonValue:
    """A decorated function's argument or result as JSON; what JCS cannot take is recorded as its str()."""
    try:
        canonicalize(value)  # type: ignore[arg-type]
    except CanonicalJsonError:
        return str(value)
    return value  # type: ignore[return-value]
