"""OpenInference's flattened list attributes (`llm.input_messages.N.message.role`, ...), which the registry's
scalar attributes cannot express: the emitter writes them, the collector's normaliser reads them back."""

from __future__ import annotations

from typing import Final

# `{prefix}.{N}.{item}.{field}`: e.g. llm.input_messages.0.message.content.
INPUT_MESSAGES_PREFIX: Final = "llm.input_messages"
OUTPUT_MESSAGES_PREFIX: Final = "llm.output_messages"
MESSAGE_ITEM: Final = "message"
RETRIEVAL_DOCUMENTS_PREFIX: Final = "retrieval.documents"
DOCUMENT_ITEM: Final = "document"

# Span kinds (values of openinference.span.kind) the emitter and the normaliser use.
KIND_AGENT: Final = "AGENT"
KIND_LLM: Final = "LLM"
KIND_RETRIEVER: Final = "RETRIEVER"
KIND_TOOL: Final = "TOOL"
KIND_GUARDRAIL: Final = "GUARDRAIL"
KIND_CHAIN: Final = "CHAIN"

MIME_JSON: Final = "application/json"
MIME_TEXT: Final = "text/plain"


def flattened_key(prefix: str, index: int, item: str, field: str) -> str:
    return f"{prefix}.{index}.{item}.{field}"
