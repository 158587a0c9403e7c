"""Benchmark of the redaction processor against Presidio on the same seeded, labeled corpus, in one run.

The corpus is tests/collector/redaction_corpus.py's broad one (faker locales, libphonenumber example numbers,
vendor-shaped secrets, in JSON/INI/URL/log/mail/prose contexts, with look-alike decoys). Prints per-entity
recall, precision (character-span overlap) and the share masked whole, the decoy hit rate, MB/s on one core
on dense PII and on realistic spans, and the latency of a one-value call. Run from the checkout:
`.venv/bin/python benchmarks/redaction.py [--documents N] [--runs N]`; Presidio comes from
`pip install presidio-analyzer presidio-anonymizer` (no spaCy model is needed: see below).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the corpus generator lives with the tests, which use it too

from pydantic import SecretStr  # noqa: E402

from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor, detect  # noqa: E402
from tests.collector.redaction_corpus import (  # noqa: E402
    STRUCTURED_ENTITIES,
    Document,
    generate_broad_corpus,
    generate_decoys,
)
from tests.collector.span_batches import span_columns_table  # noqa: E402

Spans = list[list[tuple[str, int, int]]]

PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
    "IP_ADDRESS": "ip",
}


def score(documents: Sequence[Document], found: Spans) -> dict[str, tuple[float, float, int]]:
    """entity -> (recall, precision, labeled items): a hit is any overlap with a span of the same type."""
    hit, missed, right, wrong = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    for document, spans in zip(documents, found, strict=True):
        for label in document.labels:
            overlaps = any(e == label.entity and s < label.end and label.start < t for e, s, t in spans)
            (hit if overlaps else missed)[label.entity] += 1
        for entity, start, end in spans:
            overlaps = any(
                label.entity == entity and start < label.end and label.start < end for label in document.labels
            )
            (right if overlaps else wrong)[entity] += 1
    result = {}
    for entity in STRUCTURED_ENTITIES:
        labeled = hit[entity] + missed[entity]
        predicted = right[entity] + wrong[entity]
        result[entity] = (
            hit[entity] / labeled if labeled else float("nan"),
            right[entity] / predicted if predicted else float("nan"),
            labeled,
        )
    return result


def masked_whole(documents: Sequence[Document], found: Spans) -> dict[str, float]:
    """entity -> share of labeled items every character of which lies in a detection (no group left in clear)."""
    whole, total = Counter[str](), Counter[str]()
    for document, spans in zip(documents, found, strict=True):
        for label in document.labels:
            total[label.entity] += 1
            covered = set()
            for _, start, end in spans:
                covered.update(range(max(start, label.start), min(end, label.end)))
            whole[label.entity] += len(covered) == label.end - label.start
    return {entity: whole[entity] / total[entity] if total[entity] else float("nan") for entity in total}


def ours(texts: Sequence[str]) -> Spans:
    """Our detections as (entity, start, end), the order score() reads."""
    return [[(entity, start, end) for start, end, entity in found] for found in detect(texts)]


def one_value_ms(action: Callable[[], object], calls: int) -> float:
    action()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def median_seconds(action: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.process_time()  # CPU time of this process: "per core", whatever else the machine does
        action()
        timings.append(time.process_time() - started)
    return statistics.median(timings)


def span_batch(texts: Sequence[str]) -> pa.Table:
    """A batch of agent spans carrying the corpus as their input value, as the receiver would build it."""
    return span_columns_table(
        len(texts),
        input_value=list(texts),
        name=["execute_tool update_customer"] * len(texts),
        attributes=[[("gen_ai.tool.name", "update_customer")] for _ in texts],
    )


_PROSE = (
    "the agent checked the refund policy for the order and found that the amount exceeds the automatic limit so it"
    " asked for approval before calling the payments tool; the retrieved documents mention shipping delays and a"
    " partial refund was proposed to the customer after comparing the invoice lines with the warehouse report"
)
_FILLER = tuple(_PROSE.split())


def realistic_texts(documents: Sequence[Document], count: int, pii_share: float, seed: int) -> list[str]:
    """Agent span content as PERFORMANCE.md measured it (~500 characters of prose with ids, versions and
    timestamps); `pii_share` of them also carry one labeled corpus document."""
    import random

    from tests.collector.redaction_corpus import HardNegatives

    rng = random.Random(seed)
    negatives = HardNegatives(rng)
    texts = []
    for index in range(count):
        words = [rng.choice(_FILLER) for _ in range(70)]
        words[rng.randrange(70)] = negatives.any()
        text = " ".join(words)
        if rng.random() < pii_share:
            text += " " + documents[index % len(documents)].text
        texts.append(text)
    return texts


def breakdown(processor: RedactionProcessor, corpora: Sequence[tuple[str, Sequence[str]]], runs: int) -> None:
    """Where the time goes, per corpus: how many values the RE2 prefilter lets through to marking and Python, the
    time of the prefilter and of the marking passes alone, and the throughput on first sight (values never seen,
    so libphonenumber's lookups are not yet cached) against the same batch again; then libphonenumber's cost."""
    from agentledger.collector.processors import redaction_detectors as detectors

    if processor.scanner.hyperscan is not None:
        print(
            "breakdown, on hyperscan: "
            + "; ".join(_hyperscan_breakdown(processor, name, texts, runs) for name, texts in corpora)
        )
    for name, texts in corpora:
        _breakdown_corpus(processor, name, texts, runs)
    # libphonenumber: the lookups the dense corpus makes on first sight, timed without the cache.
    dense = corpora[0][1]
    detectors.phone_region.cache_clear()
    processor.process(span_batch(dense))
    lookups = detectors.phone_region.cache_info().misses
    megabytes = sum(len(text.encode()) for text in dense) / 1e6
    uncached = detectors.phone_region.__wrapped__
    candidates = [(text, detectors.DEFAULT_PHONE_REGIONS) for text in _phone_lookups(processor, dense)]
    started = time.process_time()
    for candidate, regions in candidates:
        uncached(candidate, regions)
    per_lookup = (time.process_time() - started) / max(1, len(candidates))
    print(
        f"breakdown, libphonenumber: {lookups / megabytes:.0f} lookups per MB of dense text,"
        f" {per_lookup * 1e6:.0f} us each: alone a bound of {1 / (lookups / megabytes * per_lookup):.1f} MB/s per core"
    )


def library_floor(documents: Sequence[Document], target_mb_s: float = 20.0) -> str:
    """The least work the kept libraries issue 17 asks for do on the dense corpus, whatever the detector around
    them: each labeled phone parsed and checked once by libphonenumber in the one region where it is valid (the
    detector may try several, and also sees look-alikes), each labeled card's digits through python-stdnum's Luhn
    and each labeled IBAN through its mod 97-10. Timed without caches (real traffic rarely repeats a number): a bound
    on MB/s per core that no scan or detector design can pass while those libraries validate each item."""
    import phonenumbers

    from agentledger.collector.processors import redaction_detectors as detectors

    megabytes = sum(len(document.text.encode()) for document in documents) / 1e6
    texts: dict[str, list[str]] = {entity: [] for entity in ("phone", "card", "iban")}
    for document in documents:
        for label in document.labels:
            if label.entity in texts:
                texts[label.entity].append(document.text[label.start : label.end])
    # Each phone in the region libphonenumber finds it valid in, found untimed (the detector's own search).
    phones: list[tuple[str, str | None]] = []
    for text in texts["phone"]:
        shape = detectors.phone_shape(text)
        number = shape[1] if shape is not None else text
        region = detectors.phone_region.__wrapped__(number, detectors.DEFAULT_PHONE_REGIONS)
        if region is not None:
            phones.append((number, None if number.startswith("+") else region))
    # The detector's own checks: Luhn on the card's digits, the IBAN's length and mod 97-10 on its compact form.
    cards = [detectors._digits(text) for text in texts["card"]]
    ibans = ["".join(ch for ch in text if ch.isalnum()) for text in texts["iban"]]

    def phone_checks() -> None:
        for number, region in phones:
            parsed = phonenumbers.parse(number, region)
            # With its country code the detector asks for a possible number only; else for a valid one.
            check = phonenumbers.is_possible_number if region is None else phonenumbers.is_valid_number
            check(parsed)

    def checksums() -> None:
        for digits in cards:
            detectors.luhn_valid(digits)
        for compact in ibans:
            detectors.iban_valid(compact)

    phone_seconds = median_seconds(phone_checks, 5)
    checksum_seconds = median_seconds(checksums, 5)
    items = len(phones) + len(cards) + len(ibans)
    budget_us = megabytes / target_mb_s / max(1, items) * 1e6
    return (
        f"floor, kept libraries on the dense corpus: {len(phones)} labeled phones {phone_seconds * 1e3:.0f} ms"
        f" ({phone_seconds / max(1, len(phones)) * 1e6:.0f} us each, libphonenumber), {len(cards)} cards and"
        f" {len(ibans)} IBANs {checksum_seconds * 1e3:.1f} ms (python-stdnum): alone a bound of"
        f" {megabytes / max(phone_seconds + checksum_seconds, 1e-9):.1f} MB/s per core; {target_mb_s:.0f} MB/s leaves"
        f" {budget_us:.0f} us per such item for everything"
    )


def _breakdown_corpus(processor: RedactionProcessor, name: str, texts: Sequence[str], runs: int) -> None:
    from agentledger.collector.processors import redaction_detectors as detectors
    from agentledger.collector.processors.redaction import _mark_group

    scanner = processor.scanner
    rules = scanner.rules
    values = pa.array(list(texts), pa.string())
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    passed: list[pa.Array] = []

    def prefilter() -> None:
        matched = [pc.match_substring_regex(values, pattern) for pattern in scanner.column_prefilters]
        if rules is not None:
            matched.append(pc.match_substring_regex(values, rules.keyword_literals, ignore_case=True))
            matched.append(pc.match_substring_regex(values, rules.short_rule_pattern))
        passed[:] = [values.filter(functools.reduce(pc.or_, matched))]

    def mark() -> None:
        marked = passed[0]
        for group_pattern, group in scanner.pass_groups:
            marked = _mark_group(marked, group_pattern, group)

    prefilter_seconds = median_seconds(prefilter, runs)
    mark_seconds = median_seconds(mark, runs)
    batch = span_batch(texts)
    detectors.phone_region.cache_clear()
    started = time.process_time()
    processor.process(batch)
    first = time.process_time() - started
    again = median_seconds(lambda: processor.process(batch), runs)
    print(
        f"breakdown, {name}: {len(passed[0])} of {len(values)} values pass the prefilter;"
        f" prefilter {prefilter_seconds * 1e3:.0f} ms, marking {mark_seconds * 1e3:.0f} ms"
        f" (RE2 alone: {megabytes / (prefilter_seconds + mark_seconds):.1f} MB/s);"
        f" first sight {megabytes / first:.1f} MB/s, same batch again {megabytes / again:.1f} MB/s per core"
    )


def _hyperscan_breakdown(processor: RedactionProcessor, name: str, texts: Sequence[str], runs: int) -> str:
    """The processor's column scans as it runs them: the Hyperscan prefilter, and the RE2 marking passes, each on the
    values it can mark (the RE2 figures below run every pass on every value that passes)."""
    from agentledger.collector.processors.redaction import _mark_pass, _Scan

    scanner = processor.scanner
    assert scanner.hyperscan is not None
    values = pa.array(list(texts), pa.string())
    passed: list[pa.Array] = []

    def prefilter() -> None:
        hits, _ = _Scan(scanner)._prefilter(values)
        passed[:] = [values.filter(hits)]

    def mark() -> None:
        assert scanner.hyperscan is not None
        marked = passed[0]
        may_match = scanner.hyperscan.group_matches(marked)
        for index, (pattern, marker) in enumerate(scanner.passes):
            marked = _mark_pass(marked, pattern, marker, may_match[:, index], scanner.binding_passes.get(index))

    prefilter_seconds = median_seconds(prefilter, runs)
    mark_seconds = median_seconds(mark, runs)
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    return (
        f"{name} prefilter {prefilter_seconds * 1e3:.0f} ms, marking {mark_seconds * 1e3:.0f} ms"
        f" (scans alone {megabytes / (prefilter_seconds + mark_seconds):.1f} MB/s)"
    )


def _phone_lookups(processor: RedactionProcessor, texts: Sequence[str]) -> list[str]:
    """The candidates that reach libphonenumber when `texts` are redacted (the cache's keys, in order)."""
    from agentledger.collector.processors import redaction_detectors as detectors

    seen: list[str] = []
    uncached = detectors.phone_region.__wrapped__

    def recording(candidate: str, regions: tuple[str, ...]) -> str | None:
        seen.append(candidate)
        return uncached(candidate, regions)

    cached = detectors.phone_region
    detectors.phone_region = recording  # type: ignore[assignment]  # the phone detector looks it up per call
    try:
        processor.process(span_batch(texts))
    finally:
        detectors.phone_region = cached
    return seen


def presidio_engines() -> tuple[Any, Any, str] | None:
    """Presidio's analyzer on a blank spaCy pipeline: no official spaCy model is on PyPI and nothing else can
    be fetched here, so its NER (PERSON, LOCATION) is off and its pattern/checksum recognizers do the work,
    which are exactly the ones that cover our structured entity types. None when Presidio is not installed
    (it is an optional extra): the benchmark then measures agentledger alone."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine
    except ImportError:
        return None

    model_dir = Path(tempfile.mkdtemp(prefix="blank-en-")) / "model"
    spacy.blank("en").to_disk(model_dir)
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(model_dir)}]}
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    return analyzer, AnonymizerEngine(), "regex/checksum recognizers on a blank spaCy pipeline (no NER model)"


@dataclass(frozen=True)
class PresidioResult:
    mode: str
    scores: dict[str, tuple[float, float, int]]
    corpus_seconds: float
    realistic_mb: float
    realistic_seconds: float


def run_presidio(
    engines: tuple[Any, Any, str], documents: Sequence[Document], realistic: Sequence[str], runs: int
) -> PresidioResult:
    analyzer, anonymizer, mode = engines
    texts = [document.text for document in documents]
    entities = list(PRESIDIO_TYPES)
    found: Spans = []

    def on_corpus() -> None:
        found.clear()
        for text in texts:
            results = analyzer.analyze(text=text, language="en", entities=entities)
            anonymizer.anonymize(text=text, analyzer_results=results)
            found.append([(PRESIDIO_TYPES[r.entity_type], r.start, r.end) for r in results])

    corpus_seconds = median_seconds(on_corpus, runs)
    # Presidio on the realistic spans too, on a slice: at its speed all 20,000 would take minutes.
    realistic_slice = realistic[:1000]

    def on_realistic() -> None:
        for text in realistic_slice:
            anonymizer.anonymize(
                text=text, analyzer_results=analyzer.analyze(text=text, language="en", entities=entities)
            )

    realistic_seconds = median_seconds(on_realistic, runs)
    realistic_mb = sum(len(text.encode()) for text in realistic_slice) / 1e6
    return PresidioResult(mode, score(documents, found), corpus_seconds, realistic_mb, realistic_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--realistic-spans", type=int, default=20_000, help="spans of realistic agent content")
    parser.add_argument("--runs", type=int, default=5, help="timed runs for agentledger (median)")
    parser.add_argument("--presidio-runs", type=int, default=3, help="timed runs for Presidio (median)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--pii-share", type=float, default=0.1, help="share of realistic spans carrying PII")
    parser.add_argument("--smoke", action="store_true", help="200 documents, 500 realistic spans, one run each")
    parser.add_argument(
        "--breakdown", action="store_true", help="also print where the time goes (prefilter, marking, libphonenumber)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.documents, args.realistic_spans, args.runs, args.presidio_runs = 200, 500, 1, 1

    documents = generate_broad_corpus(args.documents, args.seed)
    texts = [document.text for document in documents]
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    labeled = sum(len(document.labels) for document in documents)
    print(f"corpus: {len(documents)} documents, {megabytes:.2f} MB, {labeled} labeled items, seed {args.seed}")

    our_found = ours(texts)
    our_scores = score(documents, our_found)
    whole = masked_whole(documents, our_found)
    decoys = generate_decoys(args.documents, args.seed)
    decoy_hits = sum(1 for found in detect(decoys) if found)
    processor = RedactionProcessor()
    batch = span_batch(texts)
    detect_seconds = median_seconds(lambda: detect(texts), args.runs)
    process_seconds = median_seconds(lambda: processor.process(batch), args.runs)
    # What the timed processor call produced: every labeled document must come out changed.
    redacted = processor.process(batch)["input_value"].to_pylist()
    changed = sum(1 for before, after in zip(texts, redacted, strict=True) if before != after)
    with_labels = sum(1 for document in documents if document.labels)

    single = span_batch(["mail jane@example.com"])
    detect_ms = one_value_ms(lambda: detect(["mail jane@example.com"]), 200)
    process_ms = one_value_ms(lambda: processor.process(single), 200)
    pseudonymising = RedactionProcessor(RedactionConfig(default_mode="pseudonym", hmac_key=SecretStr("k" * 32)))
    pseudonym_seconds = median_seconds(lambda: pseudonymising.process(batch), args.runs)
    realistic = realistic_texts(documents, args.realistic_spans, args.pii_share, args.seed)
    realistic_mb = sum(len(text.encode()) for text in realistic) / 1e6
    realistic_batch = span_batch(realistic)
    realistic_seconds = median_seconds(lambda: processor.process(realistic_batch), args.runs)

    engines = presidio_engines()
    theirs = None if engines is None else run_presidio(engines, documents, realistic, args.presidio_runs)

    if theirs is None:
        print("Presidio: not installed (pip install presidio-analyzer presidio-anonymizer), agentledger only")
    else:
        print(f"Presidio: {theirs.mode}; secrets: Presidio has no recognizers for them")
    print(f"redacted: {changed} of {len(texts)} corpus documents changed, {with_labels} carry labeled items")
    print()
    header = f"{'entity':<8} {'items':>6} | {'agentledger recall':>18} {'precision':>9} {'whole':>6}"
    print(header if theirs is None else f"{header} | {'Presidio recall':>15} {'precision':>9}")
    for entity in STRUCTURED_ENTITIES:
        our_recall, our_precision, items = our_scores[entity]
        row = f"{entity:<8} {items:>6} | {our_recall:>18.4f} {our_precision:>9.4f} {whole.get(entity, 0.0):>6.4f}"
        if theirs is not None:
            their_recall, their_precision, _ = theirs.scores[entity]
            row += f" | {their_recall:>15.4f} {their_precision:>9.4f}"
        print(row)
    print(f"decoys: {decoy_hits} of {len(decoys)} decoy-only texts had a detection ({decoy_hits / len(decoys):.2%})")
    print(f"one 21-character value: detect {detect_ms:.3f} ms, processor.process {process_ms:.3f} ms  (median of 200)")
    print()
    print(
        f"agentledger detect (RE2 + validators over one column): {megabytes / detect_seconds:8.1f} MB/s per core"
        f"  (median of {args.runs})"
    )
    print(
        f"agentledger processor.process (span batch, mask mode): {megabytes / process_seconds:8.1f} MB/s per core"
        f"  (median of {args.runs})"
    )
    print(
        f"agentledger processor.process, pseudonym mode:         {megabytes / pseudonym_seconds:8.1f} MB/s per core"
        f"  (median of {args.runs})"
    )
    print(
        f"agentledger processor.process, realistic spans ({args.pii_share:.0%} with PII, {realistic_mb:.1f} MB):"
        f" {realistic_mb / realistic_seconds:8.1f} MB/s per core  (median of {args.runs})"
    )
    if args.breakdown:
        breakdown(processor, [("dense", texts), ("realistic", realistic)], args.runs)
        print(library_floor(documents))
    if theirs is None:
        return
    print(
        f"Presidio analyze + anonymize, corpus:                  {megabytes / theirs.corpus_seconds:8.2f} MB/s"
        f" per core  (median of {args.presidio_runs})"
    )
    presidio_realistic_rate = theirs.realistic_mb / theirs.realistic_seconds
    print(
        f"Presidio analyze + anonymize, realistic spans (first 1,000): {presidio_realistic_rate:8.2f} MB/s per core"
        f"  (median of {args.presidio_runs})"
    )
    print(f"ratio (agentledger processor / Presidio), corpus:      {theirs.corpus_seconds / process_seconds:8.1f}x")
    print(
        "ratio (agentledger processor / Presidio), realistic:   "
        f"{realistic_mb / realistic_seconds / presidio_realistic_rate:8.1f}x"
    )


if __name__ == "__main__":
    main()
