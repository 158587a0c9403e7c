"""The agent-side emitter: thin helpers over the plain OpenTelemetry API that record a run's evidence.

Depends on opentelemetry-api and agentledger's conventions only, so agents need none of the collector.
"""

from agentledger.emitter.content import Document, Message
from agentledger.emitter.run_context import ContentCapture, EmitterError, new_run_id
from agentledger.emitter.spans import (
    TRAILER_KEY,
    EvalCase,
    agent_run,
    approval,
    downstream_write,
    new_tool_call_id,
    policy_decision,
    prompt,
    retrieval,
    run_trailer,
    tool_call,
)
from agentledger.schema.canonical import CanonicalJsonError, JsonValue, canonicalize, content_hash

__all__ = [
    "TRAILER_KEY",
    "CanonicalJsonError",
    "ContentCapture",
    "Document",
    "EmitterError",
    "EvalCase",
    "JsonValue",
    "Message",
    "agent_run",
    "approval",
    "canonicalize",
    "content_hash",
    "downstream_write",
    "new_run_id",
    "new_tool_call_id",
    "policy_decision",
    "prompt",
    "retrieval",
    "run_trailer",
    "tool_call",
]
