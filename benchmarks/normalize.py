"""Prints the normalize processor's throughput on a batch of OpenInference-style spans (median of runs).

Usage: .venv/bin/python benchmarks/normalize.py [SPANS_PER_BATCH] [--runs N] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the span-batch builder lives with the tests

from agentledger.collector.processors.normalize import NormalizeProcessor
from tests.collector.span_batches import span_columns_table

RUNS = 7


def _batch(spans: int) -> pa.Table:
    """Spans of 1,000-span traces: a third LLM spans with two messages, a third tools, a third retrievers."""
    kinds = [("LLM", "TOOL", "RETRIEVER")[index % 3] for index in range(spans)]
    attributes: list[list[tuple[str, str]]] = []
    for index, kind in enumerate(kinds):
        pairs = [("openinference.span.kind", kind), ("session.id", f"sess-{index // 1000}")]
        if kind == "LLM":
            pairs += [
                ("llm.model_name", "gpt-4.1-mini"),
                ("llm.token_count.prompt", "1250"),
                ("llm.token_count.completion", "180"),
                ("llm.input_messages.0.message.role", "system"),
                ("llm.input_messages.0.message.content", "You are a refund agent. " * 20),
                ("llm.input_messages.1.message.role", "user"),
                ("llm.input_messages.1.message.content", 'My "blender" broke.\nRefund please.'),
            ]
        elif kind == "TOOL":
            pairs += [("tool.name", "issue_refund")]
        else:
            pairs += [
                ("retrieval.documents.0.document.id", "kb-1"),
                ("retrieval.documents.0.document.score", "0.8"),
            ]
        attributes.append(pairs)
    return span_columns_table(
        spans,
        attributes=attributes,
        entry_type=[{"LLM": "prompt", "TOOL": "tool_call", "RETRIEVER": "retrieval"}[kind] for kind in kinds],
        trace_id=[f"{index // 1000:032x}" for index in range(spans)],
        input_value=['{"order_id": "A-1"}' if kind == "TOOL" else "" for kind in kinds],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spans", nargs="?", type=int, default=10_000, help="spans per batch")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs (median)")
    parser.add_argument("--smoke", action="store_true", help="a tiny batch and two runs: checks it still runs")
    args = parser.parse_args()
    spans, runs = (300, 2) if args.smoke else (args.spans, args.runs)
    batch = _batch(spans)
    processor = NormalizeProcessor()
    normalized = processor.process(batch)  # warm-up: regex compilation, kernel lookup
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        processor.process(batch)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(
        f"normalize: {spans} spans per batch, median of {runs}: {median * 1000:.1f} ms, {spans / median:,.0f} spans/s"
    )
    # What the measured work produced, so a run that normalizes nothing shows it.
    with_run_id = sum(1 for value in normalized["run_id"].to_pylist() if value)
    with_model = sum(1 for value in normalized["model"].to_pylist() if value)
    with_conversation = sum(1 for value in normalized["conversation_id"].to_pylist() if value)
    print(
        f"normalized: {normalized.num_rows} spans out, {with_run_id} with a run id, {with_conversation} with a"
        f" conversation, {with_model} with a model"
    )


if __name__ == "__main__":
    main()
