"""The run an emitter span belongs to, carried in the OpenTelemetry context (and baggage) of the process.

Setting OpenInference's `session.id` and `metadata` context values as well makes OpenInference
instrumentations running inside the run (an instrumented OpenAI client, say) stamp the run id on their spans.
"""

from __future__ import annotations

import json
import os
import time
from contextvars import Token
from dataclasses import dataclass
from typing import Final

from opentelemetry import baggage, context
from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from agentledger.schema import conventions as conv

ContentCapture = conv.RunContentCaptureValues

_RUN_KEY: Final = context.create_key("agentledger.emitter.run")
# OpenInference instrumentations copy this plain context value onto every span they start.
_OPENINFERENCE_SESSION_KEY: Final = conv.SESSION_ID
# ...and this one as their `metadata` attribute (a JSON object), where the collector finds the run id even
# when those spans reach it in another batch than the run's own spans.
_OPENINFERENCE_METADATA_KEY: Final = "metadata"


class EmitterError(RuntimeError):
    """The emitter was used in a way that cannot produce correct evidence (a child span outside a run, ...)."""


@dataclass(frozen=True)
class RunState:
    run_id: str
    tracer: Tracer
    capture: ContentCapture


def new_run_id() -> str:
    """`run_` + a UUIDv7 in hex: time-ordered, so run ids sort by start time."""
    unix_ms = time.time_ns() // 1_000_000
    value = (unix_ms & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return f"run_{value:032x}"


def attach_run(state: RunState) -> Token[Context]:
    """Makes `state` the current run; returns the token for detach_run()."""
    ctx = context.set_value(_RUN_KEY, state)
    ctx = context.set_value(_OPENINFERENCE_SESSION_KEY, state.run_id, ctx)
    ctx = context.set_value(_OPENINFERENCE_METADATA_KEY, json.dumps({conv.AGENT_RUN_ID: state.run_id}), ctx)
    # Baggage crosses process boundaries with W3C propagation, so a sub-agent elsewhere can join the run.
    ctx = baggage.set_baggage(conv.AGENT_RUN_ID, state.run_id, ctx)
    return context.attach(ctx)


def detach_run(token: Token[Context]) -> None:
    context.detach(token)


def current_run() -> RunState:
    state = context.get_value(_RUN_KEY)
    if not isinstance(state, RunState):
        raise EmitterError("emitter spans must be started inside `with agent_run(...)`, which carries the run id")
    return state
