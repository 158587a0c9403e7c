"""Runs one instrumentation family's real package against a local fake LLM in its own process (Logfire and
instrumentors patch process-wide state) and writes the spans it made as the OTLP protobuf request the SDK's
OTLP exporter would send. No agentledger code (the test checks).

Usage: python family_app.py FAMILY OPENAI_BASE_URL OUT_FILE, FAMILY one of openllmetry, logfire-openai,
pydantic-ai, openai-agents.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SERVICE = "refund-bot"
MESSAGES = [
    {"role": "system", "content": "You are a refund agent."},
    {"role": "user", "content": "Order A-1001 arrived broken."},
]


def issue_refund(order_id: str, amount: float) -> str:
    return f"refunded {amount:.2f} on {order_id}"


def openllmetry(base_url: str, exporter: InMemorySpanExporter) -> None:
    """OpenLLMetry's openai instrumentation (opentelemetry-instrumentation-openai, real) under the spans
    traceloop-sdk's @workflow and @tool decorators make, emulated with the plain SDK: traceloop-sdk itself
    pulls some 40 instrumentations and does nothing before Traceloop.init() imports them all."""
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("traceloop.tracer")
    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    workflow = {"traceloop.span.kind": "workflow", "traceloop.entity.name": "refund",
                "traceloop.workflow.name": "refund"}  # fmt: skip
    with tracer.start_as_current_span("refund.workflow", attributes=workflow):
        completion = client.chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES)  # type: ignore[arg-type]
        call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
        tool = {"traceloop.span.kind": "tool", "traceloop.entity.name": "issue_refund",
                "traceloop.workflow.name": "refund",
                "traceloop.entity.input": json.dumps({"args": [], "kwargs": arguments})}  # fmt: skip
        with tracer.start_as_current_span("issue_refund.tool", attributes=tool) as span:
            span.set_attribute("traceloop.entity.output", json.dumps(issue_refund(**arguments)))
        messages = [*MESSAGES, completion.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": issue_refund(**arguments)}]  # fmt: skip
        client.chat.completions.create(model="gpt-4.1-mini", messages=messages)  # type: ignore[arg-type]
    provider.shutdown()


def _logfire(exporter: InMemorySpanExporter) -> None:
    import logfire

    logfire.configure(
        send_to_logfire=False, console=False, service_name=SERVICE,
        additional_span_processors=[SimpleSpanProcessor(exporter)],
    )  # fmt: skip


def logfire_openai(base_url: str, exporter: InMemorySpanExporter) -> None:
    """Logfire on the openai client, inside an app span named by a template (as logfire.span makes them)."""
    import logfire

    _logfire(exporter)
    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    logfire.instrument_openai(client)
    with logfire.span("refund {order_id}", order_id="A-1001"):
        completion = client.chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES)  # type: ignore[arg-type]
        call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        with logfire.span("running tool {name}", name=call.function.name):  # type: ignore[union-attr]
            issue_refund(**json.loads(call.function.arguments))  # type: ignore[union-attr]
    logfire.force_flush()


def pydantic_ai(base_url: str, exporter: InMemorySpanExporter) -> None:
    """A pydantic-ai agent with one tool, instrumented by Logfire."""
    import logfire
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    _logfire(exporter)
    logfire.instrument_pydantic_ai()
    model = OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(base_url=base_url, api_key="test-key"))
    agent = Agent(model, name="refund_agent", instructions="You are a refund agent.")
    agent.tool_plain(issue_refund)
    agent.run_sync("Order A-1001 arrived broken.")
    logfire.force_flush()


def openai_agents(base_url: str, exporter: InMemorySpanExporter) -> None:
    """An OpenAI Agents SDK agent with one tool, under openinference-instrumentation-openai-agents."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-4.1-mini", openai_client=client)
    agent = Agent(name="refund_agent", instructions="You are a refund agent.", tools=[function_tool(issue_refund)],
                  model=model)  # fmt: skip
    Runner.run_sync(agent, "Order A-1001 arrived broken.")
    provider.shutdown()


FAMILIES = {
    "openllmetry": openllmetry, "logfire-openai": logfire_openai, "pydantic-ai": pydantic_ai,
    "openai-agents": openai_agents,
}  # fmt: skip

if __name__ == "__main__":
    family, base_url, out_file = sys.argv[1:4]
    spans = InMemorySpanExporter()
    FAMILIES[family](base_url, spans)
    Path(out_file).write_bytes(encode_spans(list(spans.get_finished_spans())).SerializeToString())
    # Evidence for the test that the instrumented app ran without any agentledger code.
    assert not any(name.split(".")[0] == "agentledger" for name in sys.modules), "agentledger was imported"
