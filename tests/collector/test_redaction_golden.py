"""The redaction processor's detections, frozen: what it finds in seeded corpora (labelled documents, decoys, spliced
pieces with awkward characters, realistic span batches) must equal a recorded fixture, so that a faster scan or
validator cannot change a detection unnoticed (the engines' own tests compare Hyperscan with RE2, which share the
marking and the validators).

A deliberate change of detections regenerates the fixture: `.venv/bin/python -m tests.collector.test_redaction_golden`
(and the commit says why the detections changed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

from agentledger.collector.processors.redaction import RedactionProcessor, _candidates, explain
from agentledger.collector.processors.redaction_rules import shannon_entropy
from tests.collector.redaction_corpus import generate_broad_corpus, generate_corpus, generate_decoys
from tests.collector.span_batches import span_columns_table

FIXTURE = Path(__file__).with_name("redaction_golden.json.gz")
_AWKWARD = ["\n", "\x0b", "\x00", "\x01", "\x03", "\x10", "\u212a", "é", "ſ", "€", "\\n", '"', " ", "", "\r\n"]
_PROSE_TEXT = (
    "the agent checked the refund policy for order 2024-11-03 build 4.2.1 and asked for approval at 10:22:31 before"
    " calling the payments tool; ticket 88123 and trace 4bf92f3577b34da6a3ce929d0e0e4736 were comparing versions"
)
_PROSE = _PROSE_TEXT.split()


def _spliced(texts: list[str], rng: random.Random, count: int) -> list[str]:
    values = []
    for _ in range(count):
        pieces = []
        for _ in range(rng.randint(1, 4)):
            text = rng.choice(texts)
            start = rng.randrange(len(text) + 1)
            pieces += [text[start : start + rng.randint(0, 120)], rng.choice(_AWKWARD)]
        values.append("".join(pieces))
    return values


def _realistic(texts: list[str], rng: random.Random, count: int) -> list[str]:
    values = []
    for index in range(count):
        words = [rng.choice(_PROSE) for _ in range(60)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(60), texts[index % len(texts)])
        values.append(" ".join(words))
    return values


def corpora() -> dict[str, list[str]]:
    rng = random.Random(17)
    broad = [document.text for document in generate_broad_corpus(800, seed=11)]
    labelled = [document.text for document in generate_corpus(200, seed=12)]
    return {
        "broad": broad,
        "labelled": labelled,
        "decoys": generate_decoys(600, seed=13),
        "spliced": _spliced(broad + labelled, rng, 3000),
        "realistic": _realistic(broad, rng, 3000),
    }


def _detections(values: list[str]) -> list[list[list[Any]]]:
    return [[[item.start, item.end, item.entity, item.reason] for item in found] for found in explain(values)]


def _batch_digest(values: list[str]) -> str:
    """A digest of the redacted batch (every column), as the processor returns it for spans carrying `values`."""
    batch = span_columns_table(
        len(values),
        input_value=values,
        name=["execute_tool lookup"] * len(values),
        attributes=[[("gen_ai.tool.name", "lookup"), ("note", value[:40])] for value in values],
    )
    redacted = RedactionProcessor().process(batch)
    return hashlib.sha256(json.dumps(redacted.to_pylist(), sort_keys=True, default=str).encode()).hexdigest()


def current() -> dict[str, Any]:
    texts = corpora()
    return {
        "detections": {name: _detections(values) for name, values in texts.items()},
        "batches": {name: _batch_digest(texts[name]) for name in ("broad", "realistic")},
    }


def test_the_detections_are_the_recorded_ones() -> None:
    recorded = json.loads(gzip.decompress(FIXTURE.read_bytes()))
    now = current()
    assert sum(len(found) for found in now["detections"]["broad"]) > 1500
    for name, expected in recorded["detections"].items():
        found = now["detections"][name]
        differing = [index for index, (old, new) in enumerate(zip(expected, found, strict=True)) if old != new]
        assert not differing, f"{name}: {len(differing)} values differ, first {differing[:5]}"
    assert now["batches"] == recorded["batches"]


def test_the_entropy_written_through_map_is_the_plain_formula_bit_for_bit() -> None:
    rng = random.Random(5)
    for _ in range(30_000):
        text = "".join(rng.choice(string.printable + "é€") for _ in range(rng.randint(1, 60)))
        assert shannon_entropy(text) == -sum(c / len(text) * math.log2(c / len(text)) for c in Counter(text).values())


def test_marked_candidates_come_outer_before_inner_in_unmarked_offsets() -> None:
    # `\x01` and a detector character open a mark, `\x03` closes it; nested marks, two on the same characters.
    marked = "a \x01\x16\x01\x13555\x03 12\x03 b \x01\x11x@y.io\x03 \x01\x10\x01\x12k\x03\x03"
    assert _candidates(marked) == [(2, 8, 6), (2, 5, 3), (11, 17, 1), (18, 19, 0), (18, 19, 2)]
    assert _candidates("no marks") == []


if __name__ == "__main__":
    FIXTURE.write_bytes(gzip.compress(json.dumps(current(), separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {FIXTURE}")
