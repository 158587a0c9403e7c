"""An agent instrumented only by third parties: the openai client under OpenInference's instrumentor and
OpenInference's own tracer, exporting with the OTel SDK. No agentledger code (the test checks).

Usage: python third_party_app.py COLLECTOR_URL OPENAI_BASE_URL SESSION_ID; prints the trace id.
"""

from __future__ import annotations

import json
import sys

import openai
from openinference.instrumentation import OITracer, TraceConfig, using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main(collector_url: str, openai_base_url: str, session_id: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = OITracer(provider.get_tracer("support-bot"), config=TraceConfig())
    client = openai.OpenAI(base_url=openai_base_url, api_key="test-key", max_retries=0)

    @tracer.tool
    def issue_refund(order_id: str, amount: float) -> str:
        return f"refunded {amount:.2f} on {order_id}"

    with using_session(session_id):
        with tracer.start_as_current_span("support-bot", openinference_span_kind="agent") as agent:
            with tracer.start_as_current_span("kb lookup", openinference_span_kind="retriever") as kb:
                kb.set_input("refund policy")
                kb.set_attribute("retrieval.documents.0.document.id", "kb:refund-policy#v7")
                kb.set_attribute("retrieval.documents.0.document.score", 0.82)
                kb.set_attribute("retrieval.documents.0.document.content", "Refunds up to 100 EUR are automatic.")
            completion = client.chat.completions.create(
                model="gpt-4.1-mini",
                messages=[
                    {"role": "system", "content": "You are a refund agent."},
                    {"role": "user", "content": "Order A-1001 arrived broken."},
                ],
            )
            tool_call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
            arguments = json.loads(tool_call.function.arguments)  # type: ignore[union-attr]
            issue_refund(arguments["order_id"], arguments["amount"])
            print(f"{agent.get_span_context().trace_id:032x}")
    provider.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
    # Evidence for the test that the instrumented app ran without any agentledger code.
    assert not any(name.split(".")[0] == "agentledger" for name in sys.modules), "agentledger was imported"
