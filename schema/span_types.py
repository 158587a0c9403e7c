"""How a span gets its timeline type (agentledger.span.type) when the producer did not set one.

OTel GenAI's `gen_ai.operation.name` is consulted first, then OpenInference's span kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from agentledger.schema.conventions import SpanTypeValues

_BY_OPERATION: Final[Mapping[str, SpanTypeValues]] = {
    "invoke_agent": SpanTypeValues.RUN,
    "invoke_workflow": SpanTypeValues.RUN,
    "chat": SpanTypeValues.PROMPT,
    "text_completion": SpanTypeValues.PROMPT,
    "generate_content": SpanTypeValues.PROMPT,
    "execute_tool": SpanTypeValues.TOOL_CALL,
    "retrieval": SpanTypeValues.RETRIEVAL,
}

_BY_OPENINFERENCE_KIND: Final[Mapping[str, SpanTypeValues]] = {
    "AGENT": SpanTypeValues.RUN,
    "LLM": SpanTypeValues.PROMPT,
    "TOOL": SpanTypeValues.TOOL_CALL,
    "RETRIEVER": SpanTypeValues.RETRIEVAL,
    "GUARDRAIL": SpanTypeValues.POLICY_DECISION,
}

_KNOWN: Final = frozenset(v.value for v in SpanTypeValues)


def derive_span_type(explicit: str, operation: str, openinference_kind: str) -> str:
    """The span's timeline type: the producer's own label if valid, else one derived from other conventions."""
    if explicit in _KNOWN:
        return explicit
    by_operation = _BY_OPERATION.get(operation)
    if by_operation is not None:
        return by_operation.value
    by_kind = _BY_OPENINFERENCE_KIND.get(openinference_kind.upper())
    if by_kind is not None:
        return by_kind.value
    return SpanTypeValues.SPAN.value
