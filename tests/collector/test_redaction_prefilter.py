"""The redaction processor's columnar prefilter: tight enough that look-alikes (timestamps, order ids, epoch
milliseconds, uuids) never reach the Python validators, and never so tight that it loses a detection."""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import string
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from agentledger.collector.processors.redaction import (
    RedactionConfig,
    RedactionProcessor,
    _Scan,
    _Scanner,
    detect,
)
from agentledger.collector.processors.redaction_rules import gitleaks_rules
from tests.collector.redaction_corpus import HardNegatives, generate_broad_corpus, generate_corpus, generate_decoys


def _spans(scanner: _Scanner, values: list[str]) -> list[tuple[int, str, int, int, str]]:
    scan = _Scan(scanner)
    scan.spans = []
    redacted = scan.run(pa.array(values, pa.string())).to_pylist()
    assert len(redacted) == len(values)
    return sorted(scan.spans)


def _fuzz(seed: int, count: int) -> list[str]:
    """Digit runs, separators, escapes and phone words in every arrangement, where prefilter and validator differ
    most easily."""
    rng = random.Random(seed)
    alphabet = string.digits * 4 + ' -./()+#:x,_%\n"\\=' + "tel phone ssn key ext "
    words = ["hotel", "recall", "call", "tel:", "Tel", "phone", "+", "00", "(0)", "ext.", "x", "#", "invoice", "-"]
    words += ["/", ".", " ", "\\n", '"', "=", ":", "comparing", "ring", "+44 20 7946 0958", "415-555-0199"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 60))) for _ in range(count)]
    for _ in range(count):
        parts = [
            "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 7)))
            if rng.random() < 0.5
            else rng.choice(words)
            for _ in range(rng.randint(2, 9))
        ]
        texts.append(" ".join(parts) if rng.random() < 0.5 else "".join(parts))
    return texts


def test_the_tight_prefilter_changes_no_detection() -> None:
    # Run every value through the detectors twice: with their tight prefilter patterns, and with their candidate
    # patterns as the prefilter (every value with a candidate reaches the validators, as before the prefilter
    # patterns existed). Over the corpora, decoys and fuzz, the detections must be the same.
    config = RedactionConfig()
    tight = RedactionProcessor(config).scanner
    loose_detectors = [dataclasses.replace(detector, prefilter=None) for detector in tight.detectors]
    loose = _Scanner(loose_detectors, config, gitleaks_rules())
    assert tight.column_prefilters != loose.column_prefilters
    values = [document.text for document in generate_broad_corpus(1500, seed=31)]
    values += [document.text for document in generate_corpus(300, seed=32)]
    values += generate_decoys(1500, seed=33)
    values += _fuzz(34, 3000)

    tight_spans, loose_spans = _spans(tight, values), _spans(loose, values)

    assert len(tight_spans) > 3000
    assert tight_spans == loose_spans


def test_look_alikes_do_not_leave_the_column_prefilter() -> None:
    negatives = HardNegatives(random.Random(5))
    texts = [negatives.any() for _ in range(3000)]
    scanner = RedactionProcessor().scanner
    values = pa.array(texts, pa.string())

    assert scanner.rules is not None
    matched = [pc.match_substring_regex(values, prefilter) for prefilter in scanner.column_prefilters]
    matched += [
        pc.match_substring_regex(values, scanner.rules.keyword_literals, ignore_case=True),
        pc.match_substring_regex(values, scanner.rules.short_rule_pattern),
    ]
    passed = functools.reduce(pc.or_, matched)

    # Three look-alikes need words before them to be told apart (`invoice 1234-...`, `version 1.2.3.4`) or a list
    # of file extensions (`logo@2x.png`), which RE2 cannot say without lookarounds: the validators reject those.
    shapes = Counter(re.sub(r"[0-9]+", "9", text) for text in values.filter(passed).to_pylist())
    told_by_words = {shape: shapes.pop(shape) for shape in ("invoice 9-9-9", "version 9.9.9.9", "logo@9x.png")}
    assert told_by_words == {"invoice 9-9-9": 159, "version 9.9.9.9": 148, "logo@9x.png": 162}
    # Of the other 2,531 (uuids, hashes, order ids, timestamps, epoch milliseconds, ...) a handful of uuids whose
    # hex groups look like an IBAN's or hold a gitleaks keyword.
    assert sum(shapes.values()) == 13, shapes
    assert [found for found in detect(texts) if found] == []


def test_a_phone_word_must_be_a_whole_word_in_the_text() -> None:
    # `ring` of `comparing` begins the 24 characters before the number: no phone word (it used to count).
    cut_word = "comparing the amount exceeds 1708402507171 today"
    assert cut_word[29 - 24 : 29].startswith("ring")
    # A phone word at the very start of those 24 characters that is a word of its own still counts.
    whole_word = "ring the amount exceeds 17084025071 today"

    found = detect([cut_word, whole_word, "call 49 461 ext. 900954 64 37076"])

    assert found[0] == []
    assert [(start, end, entity) for start, end, entity in found[1]] == [(24, 35, "phone")]
    assert [(start, end, entity) for start, end, entity in found[2]] == [(24, 32, "phone")]
