"""benchmarks/redaction.py at smoke size: it builds its span batches, redacts every labeled corpus document,
scores the detectors and prints its throughput figures; without Presidio (an optional extra) it says so and
measures agentledger alone."""

from __future__ import annotations

import importlib.util
import re

from tests.benchmarks.running import run_benchmark

# The seeded broad corpus of the smoke run (200 documents, seed 4): labeled items per entity.
ITEMS = {"email": 77, "phone": 62, "card": 56, "iban": 55, "ssn": 47, "ip": 39, "secret": 54}
FIGURE = r"[0-9]+\.[0-9]+ MB/s per core  \(median of 1\)"


def test_the_redaction_benchmark_runs_at_smoke_size_and_finds_every_labeled_item() -> None:
    presidio = importlib.util.find_spec("presidio_analyzer") is not None

    lines = run_benchmark("redaction.py", "--smoke").splitlines()

    assert lines[0] == "corpus: 200 documents, 0.03 MB, 390 labeled items, seed 4"
    if presidio:
        assert lines[1].startswith("Presidio: regex/checksum recognizers"), lines[1]
    else:
        assert lines[1] == (
            "Presidio: not installed (pip install presidio-analyzer presidio-anonymizer), agentledger only"
        )
    assert lines[2] == "redacted: 200 of 200 corpus documents changed, 200 carry labeled items"
    rows = {}
    for line in lines[5:12]:
        cells = line.replace("|", " ").split()
        rows[cells[0]] = (int(cells[1]), float(cells[2]), float(cells[3]), float(cells[4]))
        assert len(cells) == (7 if presidio else 5), line
    # The labeled corpus is found completely and masked whole, nothing else, and no decoy is touched.
    assert rows == {entity: (items, 1.0, 1.0, 1.0) for entity, items in ITEMS.items()}
    assert lines[12] == "decoys: 0 of 200 decoy-only texts had a detection (0.00%)"
    assert re.fullmatch(
        r"one 21-character value: detect [0-9.]+ ms, processor.process [0-9.]+ ms  \(median of 200\)", lines[13]
    ), lines[13]
    labels = [re.sub(FIGURE, "", line).rstrip() for line in lines[15:]]
    expected = [
        "agentledger detect (RE2 + validators over one column):",
        "agentledger processor.process (span batch, mask mode):",
        "agentledger processor.process, pseudonym mode:",
        "agentledger processor.process, realistic spans (10% with PII, 0.2 MB):",
    ]
    assert labels[:4] == expected
    assert len(labels) == (8 if presidio else 4), labels


def test_the_breakdown_says_where_the_time_goes() -> None:
    lines = run_benchmark("redaction.py", "--smoke", "--breakdown").splitlines()

    rate = r"[0-9]+\.[0-9] MB/s"
    assert re.fullmatch(
        rf"breakdown, dense: 200 of 200 values pass the prefilter; prefilter [0-9]+ ms, marking [0-9]+ ms"
        rf" \(RE2 alone: {rate}\); first sight {rate}, same batch again {rate} per core",
        lines[-4],
    ), lines[-4]
    # Of 500 realistic spans, 10% carry a labeled document; the other values hold one look-alike each, and only
    # the three kinds RE2 cannot tell apart without lookarounds pass (see test_redaction_prefilter.py).
    assert re.fullmatch(
        rf"breakdown, realistic: 103 of 500 values pass the prefilter; prefilter [0-9]+ ms, marking [0-9]+ ms"
        rf" \(RE2 alone: {rate}\); first sight {rate}, same batch again {rate} per core",
        lines[-3],
    ), lines[-3]
    assert re.fullmatch(
        rf"breakdown, libphonenumber: 2220 lookups per MB of dense text, [0-9]+ us each:"
        rf" alone a bound of {rate} per core",
        lines[-2],
    ), lines[-2]
    # The kept libraries' least work: every labeled phone (62), card (56) and IBAN (55) of the smoke corpus is
    # checked once, so the floor counts them all (a labeled phone libphonenumber rejected would be missing here).
    assert re.fullmatch(
        rf"floor, kept libraries on the dense corpus: 62 labeled phones [0-9]+ ms \([0-9]+ us each, libphonenumber\),"
        rf" 56 cards and 55 IBANs [0-9.]+ ms \(python-stdnum\): alone a bound of {rate} per core;"
        rf" 20 MB/s leaves [0-9]+ us per such item for everything",
        lines[-1],
    ), lines[-1]
