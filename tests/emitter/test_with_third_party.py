"""An emitter run that calls an OpenInference-instrumented OpenAI client: the instrumentation's own span
joins the run through the run id the emitter put in the context, even when exported on its own."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from agentledger.emitter import agent_run, tool_call
from agentledger.schema import conventions as conv
from tests.collector import fake_openai
from tests.collector.fake_openai import fake_openai_server
from tests.conftest import RunningService, sdk_tracer_provider, wait_for_timeline

pytestmark = pytest.mark.slow

RUN_ID = "run_mixed_0001"


@pytest.fixture
def instrumented(service: RunningService) -> Iterator[TracerProvider]:
    # SimpleSpanProcessor: every span is its own export, so no span finds its run through a batch sibling.
    provider = sdk_tracer_provider(service.collector_url, service_name="mixed-agent")
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield provider
    instrumentor.uninstrument()
    provider.shutdown()


def test_openinference_llm_span_inside_an_emitter_run_lands_in_the_run(
    service: RunningService, instrumented: TracerProvider
) -> None:
    with fake_openai_server() as openai_url:
        client = openai.OpenAI(base_url=openai_url, api_key="test-key", max_retries=0)
        with agent_run("mixed-agent-1", agent_name="mixed-agent", run_id=RUN_ID, tracer_provider=instrumented):
            client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "refund"}])
            with tool_call("issue_refund", access=conv.ToolAccessValues.WRITE, arguments={"order_id": "A-1001"}):
                pass

    body = wait_for_timeline(service.api_url, RUN_ID, entries=3)

    assert [(entry["type"], entry["name"]) for entry in body["entries"]] == [
        ("run", "invoke_agent mixed-agent"),
        ("prompt", "ChatCompletion"),
        ("tool_call", "execute_tool issue_refund"),
    ]
    llm = body["entries"][1]
    assert llm["attributes"]["session.id"] == RUN_ID
    assert (llm["details"]["model"], llm["details"]["input_tokens"]) == (
        fake_openai.RESPONSE_MODEL,
        fake_openai.PROMPT_TOKENS,
    )
    assert body["run"]["span_count"] == 3
