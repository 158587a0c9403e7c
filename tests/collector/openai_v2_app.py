"""An agent instrumented only by `opentelemetry-instrumentation-openai-v2` (plus plain OTel SDK spans for what
it does not cover: the agent and its tool), exporting traces and logs with the OTel SDK's OTLP/HTTP exporters.
No agentledger code (the test checks).

Usage: python openai_v2_app.py COLLECTOR_URL OPENAI_BASE_URL (agent|bare) CALLS; prints the trace ids, one a line.
`agent` wraps the calls in an `invoke_agent` span with an `execute_tool` span after the model's tool call;
`bare` makes the calls with no parent span at all (each its own trace), as a script calling the model does.
Content capture follows the OTEL_* variables the caller sets (span attributes or log events).
"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main(collector_url: str, openai_base_url: str, mode: str, calls: int) -> None:
    resource = Resource.create({"service.name": "refund-bot"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector_url}/v1/logs"))
    )
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    tracer = tracer_provider.get_tracer("refund-bot")
    client = openai.OpenAI(base_url=openai_base_url, api_key="test-key", max_retries=0)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "You are a refund agent."},
        {"role": "user", "content": "Order A-1001 arrived broken."},
    ]
    trace_ids: list[str] = []

    def call() -> None:
        completion = client.chat.completions.create(model="gpt-4.1-mini", messages=messages)  # type: ignore[arg-type]
        if mode == "agent":
            tool_call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
            arguments = tool_call.function.arguments  # type: ignore[union-attr]
            # The tool span names the tool and its arguments but not the call id: the collector finds it.
            with tracer.start_as_current_span(
                "execute_tool issue_refund",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "issue_refund",
                            "gen_ai.tool.call.arguments": arguments},
            ) as tool:  # fmt: skip
                order = json.loads(arguments)["order_id"]
                tool.set_attribute("gen_ai.tool.call.result", f"refunded {order}")

    if mode == "agent":
        with tracer.start_as_current_span(
            "invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}
        ) as agent:
            for _ in range(calls):
                call()
            trace_ids.append(f"{agent.get_span_context().trace_id:032x}")
    else:
        for _ in range(calls):
            call()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    print("\n".join(trace_ids))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    # Evidence for the test that the instrumented app ran without any agentledger code.
    assert not any(name.split(".")[0] == "agentledger" for name in sys.modules), "agentledger was imported"
