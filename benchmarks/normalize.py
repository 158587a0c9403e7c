"""Prints the normalize processor's throughput on a batch of OpenInference-style spans (median of runs).

Usage: .venv/bin/python benchmarks/normalize.py [SPANS_PER_BATCH]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import pyarrow as pa

from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.schema.span_columns import SPAN_SCHEMA

RUNS = 7


def _batch(spans: int) -> pa.Table:
    """Spans of 1,000-span traces: a third LLM spans with two messages, a third tools, a third retrievers."""
    columns: dict[str, list[Any]] = {field.name: [] for field in SPAN_SCHEMA}
    for index in range(spans):
        kind = ("LLM", "TOOL", "RETRIEVER")[index % 3]
        attributes = [("openinference.span.kind", kind), ("session.id", f"sess-{index // 1000}")]
        if kind == "LLM":
            attributes += [
                ("llm.model_name", "gpt-4.1-mini"),
                ("llm.token_count.prompt", "1250"),
                ("llm.token_count.completion", "180"),
                ("llm.input_messages.0.message.role", "system"),
                ("llm.input_messages.0.message.content", "You are a refund agent. " * 20),
                ("llm.input_messages.1.message.role", "user"),
                ("llm.input_messages.1.message.content", 'My "blender" broke.\nRefund please.'),
            ]
        elif kind == "TOOL":
            attributes += [("tool.name", "issue_refund")]
        else:
            attributes += [
                ("retrieval.documents.0.document.id", "kb-1"),
                ("retrieval.documents.0.document.score", "0.8"),
            ]
        for field in SPAN_SCHEMA:
            if field.name == "attributes":
                columns["attributes"].append(attributes)
            elif field.name == "entry_type":
                columns["entry_type"].append({"LLM": "prompt", "TOOL": "tool_call", "RETRIEVER": "retrieval"}[kind])
            elif field.name == "trace_id":
                columns["trace_id"].append(f"{index // 1000:032x}")
            elif field.name == "input_value":
                columns["input_value"].append('{"order_id": "A-1"}' if kind == "TOOL" else "")
            elif pa.types.is_string(field.type):
                columns[field.name].append("")
            elif pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type):
                columns[field.name].append(0)
            else:
                columns[field.name].append([])
    return pa.Table.from_pydict(columns, schema=SPAN_SCHEMA)


def main() -> None:
    spans = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    batch = _batch(spans)
    processor = NormalizeProcessor()
    processor.process(batch)  # warm-up: regex compilation, kernel lookup
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        processor.process(batch)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(
        f"normalize: {spans} spans per batch, median of {RUNS}: {median * 1000:.1f} ms, {spans / median:,.0f} spans/s"
    )


if __name__ == "__main__":
    main()
