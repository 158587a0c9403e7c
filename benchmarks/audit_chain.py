"""Benchmark of the audit chain's CPU cost per 100k spans: v2 (length-prefixed digests, links with every
field under the hash, the log's Merkle frontier and a signed checkpoint per batch) against v1 (JCS digests,
v1 links), on the same batches in one run, both signing every link with Ed25519.

Run from the checkout: `.venv/bin/python benchmarks/audit_chain.py [--spans N] [--batch N] [--runs N]`.
Prints the median of --runs timings of each step and the v2/v1 ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import (
    DIGEST_V1,
    DIGEST_V2,
    GENESIS,
    LINK_FORMAT_V2,
    ChainLink,
    chain_link_v1,
    digests_of_batch,
    span_key,
)
from agentledger.ingest.checkpoints import Checkpoint
from agentledger.ingest.merkle import CompactRange, leaf_hash, root_text
from agentledger.ingest.signing import LinkSigner


def make_batch(spans: int, runs: int) -> pa.Table:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench", "1.0")
    for index in range(spans):
        attributes = {"agent.run.id": f"run_{index % runs}", "gen_ai.tool.name": "refund", "amount": str(index),
                      "note": "Grüße, a typical tool argument of some length " * 3}  # fmt: skip
        with tracer.start_as_current_span(f"tool {index}", attributes=attributes) as span:
            span.add_event("retry", {"attempt": "2"})
    return decode_request(encode_spans(exporter.get_finished_spans()), Identity("bench")).batch


def groups_of(batch: pa.Table, digests: list[str]) -> dict[str, list[tuple[str, str, int]]]:
    groups: dict[str, list[tuple[str, str, int]]] = {}
    for run_id, trace_id, span_id, digest in zip(batch["run_id"].to_pylist(), batch["trace_id"].to_pylist(),
                                                 batch["span_id"].to_pylist(), digests, strict=True):  # fmt: skip
        groups.setdefault(run_id, []).append((span_key(trace_id, span_id), digest, 4291747200))
    return groups


def v1(batches: list[pa.Table], signer: LinkSigner) -> None:
    heads: dict[str, str] = {}
    for batch in batches:
        for run_id, entries in sorted(groups_of(batch, digests_of_batch(batch, DIGEST_V1)).items()):
            entries.sort()
            link = chain_link_v1(heads.get(run_id, GENESIS), 1, [k for k, _, _ in entries],
                                 [d for _, d, _ in entries], [u for _, _, u in entries])  # fmt: skip
            signer.sign(link)
            heads[run_id] = link


def v2(batches: list[pa.Table], signer: LinkSigner) -> None:
    heads: dict[str, tuple[int, str]] = {}
    frontier = CompactRange()
    for batch in batches:
        for run_id, entries in sorted(groups_of(batch, digests_of_batch(batch, DIGEST_V2)).items()):
            entries.sort()
            seq, prev = heads.get(run_id, (0, GENESIS))
            link = ChainLink(tenant="bench", run_id=run_id, seq=seq + 1, kind="spans", batch_time_ns=1,
                             span_keys=tuple(k for k, _, _ in entries), span_digests=tuple(d for _, d, _ in entries),
                             span_retain_until=tuple(u for _, _, u in entries), prev_link=prev, link="",
                             collector_id="bench", log_index=frontier.size, digest_version=DIGEST_V2,
                             format_version=LINK_FORMAT_V2).recomputed()  # fmt: skip
            signer.sign(link)
            frontier.append(leaf_hash(link))
            heads[run_id] = (seq + 1, link)
        checkpoint = Checkpoint("bench", "bench", frontier.size, root_text(frontier.root()), 1)
        signer.sign(checkpoint.hash())


def median_seconds(step: Callable[[], None], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans measured (default 20000)")
    parser.add_argument("--batch", type=int, default=2_000, help="spans per export batch (default 2000)")
    parser.add_argument("--run-ids", type=int, default=50, help="distinct runs in the spans (default 50)")
    parser.add_argument("--runs", type=int, default=5, help="timings per variant; the median is printed")
    args = parser.parse_args(argv)
    batch = make_batch(args.batch, args.run_ids)
    batches = [batch] * max(1, args.spans // args.batch)
    spans = batch.num_rows * len(batches)
    signer = LinkSigner(Ed25519PrivateKey.generate())
    per_100k = 100_000 / spans
    digest_v1 = median_seconds(lambda: [digests_of_batch(b, DIGEST_V1) for b in batches], args.runs) * per_100k
    digest_v2 = median_seconds(lambda: [digests_of_batch(b, DIGEST_V2) for b in batches], args.runs) * per_100k
    total_v1 = median_seconds(lambda: v1(batches, signer), args.runs) * per_100k
    total_v2 = median_seconds(lambda: v2(batches, signer), args.runs) * per_100k
    print(f"audit chain CPU cost per 100k spans ({spans} spans measured in batches of {batch.num_rows},"
          f" {args.run_ids} runs, median of {args.runs})")  # fmt: skip
    print(f"digests v1: {digest_v1:.3f} s")
    print(f"digests v2: {digest_v2:.3f} s")
    print(f"v1 digest + link + signature: {total_v1:.3f} s")
    print(f"v2 digest + link + signature + checkpoint: {total_v2:.3f} s")
    print(f"v2/v1: {total_v2 / total_v1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
