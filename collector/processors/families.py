"""What each instrumentation family calls the things agentledger types: one table per family (OpenInference,
OTel GenAI current and deprecated, OpenLLMetry / traceloop, Logfire / pydantic-ai), read by the normaliser.

Adding a family, or a key a family renamed, is a change to these tables only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from agentledger.schema import conventions as conv
from agentledger.schema import openinference as oi

RUN: Final = conv.SpanTypeValues.RUN.value
PROMPT: Final = conv.SpanTypeValues.PROMPT.value
TOOL_CALL: Final = conv.SpanTypeValues.TOOL_CALL.value


@dataclass(frozen=True)
class FlattenedList:
    """`prefix.N[.item].field = value` keys that make one JSON array in `column` (item None: no item name)."""

    prefix: str
    column: str
    item: str | None


@dataclass(frozen=True)
class Family:
    name: str
    # Typed column -> attribute keys read, in order, while the column is still empty.
    strings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Attribute key -> (its value, upper-cased -> timeline type), for spans no other convention typed.
    span_kinds: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Keys whose mere presence makes an untyped span of the given type (pydantic-ai marks spans so).
    kind_when_present: Mapping[str, str] = field(default_factory=dict)
    # Keys naming the agent, read on run spans only (elsewhere the same key names a task or a tool).
    agent_names: tuple[str, ...] = ()
    # Keys naming the tool, read on tool_call spans only.
    tool_names: tuple[str, ...] = ()
    flattened: tuple[FlattenedList, ...] = ()
    # Deprecated key -> its current name, added to the attributes when only the old one is there.
    renames: Mapping[str, str] = field(default_factory=dict)
    # Instrumentation scope whose run spans lacking every one of `run_needs` are wrappers, not runs.
    scope: str | None = None
    run_needs: tuple[str, ...] = ()
    # Keys holding the rendered span name and the template it came from: a span named by its template
    # takes the rendered name.
    rendered_name: str | None = None
    name_template: str | None = None


OPENINFERENCE: Final = Family(
    name="openinference",
    strings={
        "model": (conv.LLM_MODEL_NAME,),
        "tool_name": (conv.TOOL_NAME, "tool_call.function.name"),
        "tool_call_id": ("tool_call.id",),
        "tool_arguments": ("tool_call.function.arguments",),
        "agent_name": ("agent.name",),
    },
    ints={"input_tokens": (conv.LLM_TOKEN_COUNT_PROMPT,), "output_tokens": (conv.LLM_TOKEN_COUNT_COMPLETION,)},
    flattened=(
        FlattenedList(oi.INPUT_MESSAGES_PREFIX, "input_messages", oi.MESSAGE_ITEM),
        FlattenedList(oi.OUTPUT_MESSAGES_PREFIX, "output_messages", oi.MESSAGE_ITEM),
        FlattenedList(oi.RETRIEVAL_DOCUMENTS_PREFIX, "retrieval_documents", oi.DOCUMENT_ITEM),
    ),
)

# The current keys are the registry's own and were promoted by decoding; these are the rest and the old ones.
OTEL_GENAI: Final = Family(
    name="otel-genai",
    strings={"model": ("gen_ai.response.model",)},
    ints={"input_tokens": ("gen_ai.usage.prompt_tokens",), "output_tokens": ("gen_ai.usage.completion_tokens",)},
    renames={"gen_ai.system": "gen_ai.provider.name"},
)

OPENLLMETRY: Final = Family(
    name="openllmetry",
    strings={"input_value": ("traceloop.entity.input",), "output_value": ("traceloop.entity.output",)},
    ints={"input_tokens": ("llm.usage.prompt_tokens",), "output_tokens": ("llm.usage.completion_tokens",)},
    span_kinds={
        "traceloop.span.kind": {"WORKFLOW": RUN, "AGENT": RUN, "TOOL": TOOL_CALL},
        "llm.request.type": {"CHAT": PROMPT, "COMPLETION": PROMPT},
    },
    agent_names=("traceloop.entity.name",),
    tool_names=("traceloop.entity.name",),
    # OpenLLMetry's legacy content: gen_ai.prompt.N.role / .content, gen_ai.completion.N.tool_calls.M.name ...
    flattened=(
        FlattenedList("gen_ai.prompt", "input_messages", None),
        FlattenedList("gen_ai.completion", "output_messages", None),
    ),
)

LOGFIRE: Final = Family(
    name="logfire",
    # pydantic-ai: older versions' tool span keys, and the agent run's answer.
    strings={
        "tool_arguments": ("tool_arguments",),
        "tool_result": ("tool_response",),
        "output_value": ("final_result",),
    },
    kind_when_present={"agent_name": RUN},
    agent_names=("agent_name",),
    rendered_name="logfire.msg",
    name_template="logfire.msg_template",
)

# The OpenAI Agents SDK through openinference-instrumentation-openai-agents: OpenInference keys, plus its
# trace wrapper (`Agent workflow`, an AGENT span naming no agent) above the agent spans, which would make a
# second run entry.
OPENAI_AGENTS: Final = Family(
    name="openai-agents",
    scope="openinference.instrumentation.openai_agents",
    run_needs=("agent.name", "gen_ai.agent.name"),
)

FAMILIES: Final[tuple[Family, ...]] = (OPENINFERENCE, OTEL_GENAI, OPENLLMETRY, LOGFIRE, OPENAI_AGENTS)

# Names a list item carries in OpenInference's flattened keys (`tool_calls.0.tool_call.id`): dropped when the
# normaliser nests such keys into objects.
ITEM_NAMES: Final = frozenset({"tool_call", "message_content", "message", "document"})
