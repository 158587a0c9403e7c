"""The redaction processor's column scans on Hyperscan: the same detections as the RE2 scans they replace, over the
corpora, decoys and fuzz (also where the two engines differ: non-ASCII text, vertical tabs, lines, sentinels), custom
patterns beyond Hyperscan, and RE2 alone where the hyperscan package is missing."""

from __future__ import annotations

import itertools
import random
import re
import string
import subprocess
import sys

import pyarrow as pa
import pytest

from agentledger.collector.processors.redaction import (
    RedactionConfig,
    RedactionProcessor,
    _marked,
    _outgrows_arrow_dfa,
    _re2,
    _Scan,
    _Scanner,
    detect,
)
from agentledger.collector.processors.redaction_detectors import words_except
from agentledger.collector.processors.redaction_hyperscan import _has_end_anchor, _without_word_boundaries
from agentledger.collector.processors.redaction_rules import gitleaks_rules
from tests.collector.redaction_corpus import generate_broad_corpus, generate_corpus, generate_decoys
from tests.collector.test_redaction_prefilter import _fuzz

# Characters on which Hyperscan (bytes) and RE2 (UTF-8 code points) could disagree, or that the scans use themselves
# (separators, the marking sentinels).
_AWKWARD = ["\n", "\x0b", "\x00", "\x01", "\x03", "\x10", "\u212a", "é", "ſ", "€", "\\n", '"', " ", "", "\r\n"]


def _outcome(
    scanner: _Scanner, values: list[str | None]
) -> tuple[list[str | None], list[tuple[int, str, int, int, str]], dict[str, list[int]]]:
    scan = _Scan(scanner)
    scan.spans = []
    redacted = scan.run(pa.array(values, pa.string())).to_pylist()
    return redacted, sorted(scan.spans), {entity: sorted(rows) for entity, rows in scan.found.items()}


def _spliced(texts: list[str], seed: int, count: int) -> list[str | None]:
    """Pieces of labelled texts cut anywhere and glued with the awkward characters, some values null."""
    rng = random.Random(seed)
    values: list[str | None] = []
    for _ in range(count):
        if rng.random() < 0.02:
            values.append(None)
            continue
        pieces = []
        for _ in range(rng.randint(1, 4)):
            text = rng.choice(texts)
            start = rng.randrange(len(text) + 1)
            pieces.append(text[start : start + rng.randint(0, 80)])
            pieces.append(rng.choice(_AWKWARD))
        values.append("".join(pieces[:-1]) if rng.random() < 0.5 else "".join(pieces))
    return values


def _scanners(config: RedactionConfig) -> tuple[_Scanner, _Scanner]:
    processor = RedactionProcessor(config)
    rules = gitleaks_rules() if config.gitleaks_rules else None
    return processor.scanner, _Scanner(processor.detectors, config, rules, use_hyperscan=False)


def test_the_hyperscan_scans_change_no_detection() -> None:
    fast, exact = _scanners(RedactionConfig())
    assert fast.hyperscan is not None and exact.hyperscan is None
    texts = [document.text for document in generate_broad_corpus(2000, seed=41)]
    texts += [document.text for document in generate_corpus(400, seed=42)]
    texts += generate_decoys(2000, seed=43)
    values: list[str | None] = [*texts, *_fuzz(44, 6000)]
    values += _spliced(texts, 45, 12000)
    # A value may start or end on a candidate, stand alone on a line, or be nothing at all.
    values += ["4111 1111 1111 1111", "+44 20 7946 0958\n", "\nssn=078051120", "", "x", "1\n2", "0044 20 7946 0958"]
    # A mark makes a word boundary where the text has none (a card glued to a fixed-length key), and RE2 folds the
    # Kelvin sign and the long s into `k` and `s`, which Hyperscan reads as bytes.
    values += [f"key AIzaSyA1234567890abcdefghijklmnopqrstuv{number}" for number in ("4111111111111111", "078-05-1120")]
    values += [
        "x-api-\u212aey: 0123456789abcdef0123",
        "pa\u017f\u017fword=hunter2hunter2",
        "auth_tO\u212aen = abc123def456",
    ]

    fast_outcome, exact_outcome = _outcome(fast, values), _outcome(exact, values)

    assert len(values) > 25_000
    assert len(exact_outcome[1]) > 10_000
    glued = [(entity, start, end) for row, entity, start, end, _ in exact_outcome[1] if row == len(values) - 5]
    assert glued == [("card", 43, 59), ("secret", 4, 43)]
    folded = [row for row, entity, _, _, _ in exact_outcome[1] if row >= len(values) - 3 and entity == "secret"]
    assert folded == [len(values) - 3, len(values) - 2, len(values) - 1]
    assert fast_outcome[0] == exact_outcome[0]
    assert fast_outcome[1] == exact_outcome[1]
    assert fast_outcome[2] == exact_outcome[2]


def test_custom_patterns_and_fewer_entities_keep_their_detections_on_hyperscan() -> None:
    config = RedactionConfig(
        entities=("email", "phone", "card"),
        gitleaks_rules=False,
        custom_patterns={"employee": r"\bEMP-[0-9]{6}\b", "line_end": r"ticket [0-9]+$"},
    )
    fast, exact = _scanners(config)
    texts = [document.text for document in generate_broad_corpus(600, seed=46)]
    values: list[str | None] = [*texts, *_spliced(texts, 47, 3000)]
    values += ["EMP-004211 called +44 20 7946 0958", "see ticket 4411", "ticket 12\nnext", "xEMP-123456"] * 100

    fast_outcome, exact_outcome = _outcome(fast, values), _outcome(exact, values)

    assert fast.hyperscan is not None
    assert fast_outcome == exact_outcome
    found = _outcome(fast, ["EMP-004211 called +44 20 7946 0958", "see ticket 4411", "ticket 12\nnext"] * 100)[1]
    assert [(row, entity, start, end) for row, entity, start, end, _ in found[:3]] == [
        (0, "employee", 0, 10),
        (0, "phone", 18, 34),
        (1, "line_end", 4, 15),
    ]


def test_a_custom_pattern_beyond_hyperscan_leaves_the_processor_on_re2() -> None:
    # Hyperscan has no end anchor inside a pattern; RE2 and Python do.
    config = RedactionConfig(custom_patterns={"closing": r"(?:done$|ticket )[0-9]+"})
    fast, exact = _scanners(config)
    values: list[str | None] = ["ticket 4411 is done", "work done", "mail jane@example.com"] * 200

    assert fast.hyperscan is None
    assert _outcome(fast, values) == _outcome(exact, values)
    assert [(start, end, entity) for start, end, entity in detect(values[:3], config)[0]] == [(0, 11, "closing")]


@pytest.mark.parametrize(
    ("pattern", "widened"),
    [
        (r"\bab\b", "(?:)ab(?:)"),
        (r"(?:\b|\\[nrtbf])\d{3}", r"(?:(?:)|\\[nrtbf])\d{3}"),
        (r"[\b]x", r"[\b]x"),  # a backspace inside a class stays
        (r"[]\b]", r"[]\b]"),  # `]` first in a class is a literal
        (r"\\b", r"\\b"),  # an escaped backslash, then `b`
        (r"a$", None),
        (r"^a", None),
        (r"\Bx", None),
        (r"[$^]x", "[$^]x"),
    ],
)
def test_only_word_boundaries_outside_classes_are_dropped_from_marking_patterns(
    pattern: str, widened: str | None
) -> None:
    assert _without_word_boundaries(pattern) == widened


@pytest.mark.parametrize(
    ("pattern", "anchored"),
    [("(?:$|x)", True), (r"a\z", True), (r"[$]", False), (r"\$", False), (r"\\$", True), ("^a", False)],
)
def test_end_anchors_are_told_from_literal_dollars(pattern: str, anchored: bool) -> None:
    assert _has_end_anchor(pattern) is anchored


def test_without_the_hyperscan_package_the_processor_runs_on_re2_alone() -> None:
    # Where no hyperscan wheel exists (it ships for x86-64 only) the import fails: the same detections, on RE2.
    program = (
        "import sys; sys.modules['hyperscan'] = None\n"
        "from agentledger.collector.processors.redaction import RedactionProcessor, detect\n"
        "assert RedactionProcessor().scanner.hyperscan is None\n"
        "print(detect(['call +44 20 7946 0958 or jane@example.com'] * 300)[299])\n"
    )

    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[Detection(start=5, end=21, entity='phone'), Detection(start=25, end=41, entity='email')]"
    )


def test_one_scanner_serves_threads_at_once() -> None:
    import threading

    fast, exact = _scanners(RedactionConfig())
    values: list[str | None] = [document.text for document in generate_broad_corpus(300, seed=48)] * 3
    expected = _outcome(exact, values)
    results: list[object] = []

    def scan() -> None:
        results.append(_outcome(fast, values))

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [expected] * 4


def test_marking_through_the_compiled_re2_object_marks_what_the_bindings_sub_marks() -> None:
    scanner = RedactionProcessor().scanner
    texts = [document.text for document in generate_broad_corpus(300, seed=49)]
    texts += [text for text in _spliced(texts, 50, 1500) if text is not None]
    texts += ["tok\u00e9n=ab1 token: \u212a9a9z", "auth=\u00e91\u00e9" * 20, "KEY = 0123456789abcdef0123", ""]

    def reference(program: object, marker: str, text: str) -> str:
        return str(program.sub(lambda found: f"\x01{marker}{found.group(0)}\x03", text))  # type: ignore[attr-defined]

    for program, marker in scanner.small_passes:
        assert [_marked(program, marker, text) for text in texts] == [
            reference(program, marker, text) for text in texts
        ]
    # A pattern that matches the empty string (a custom one may, between characters) takes the binding's own steps.
    empty = _re2("a*")
    assert (
        _marked(empty, "\x10", "baab\u00e9")
        == reference(empty, "\x10", "baab\u00e9")
        == ("\x01\x10\x03b\x01\x10aa\x03\x01\x10\x03b\x01\x10\x03\u00e9\x01\x10\x03")
    )


def test_only_passes_with_two_large_counted_repeats_leave_pyarrow() -> None:
    scanner = RedactionProcessor().scanner
    taken = [scanner.passes[index][0] for index in scanner.binding_passes]

    # The weak secret key names (`token`, `key`, `auth`) before a value of up to 80 + 1 + 80 characters.
    assert len(taken) == 1 and taken[0].startswith("(?i:token|") and taken[0].count("{0,80}") == 2
    assert _outgrows_arrow_dfa(r"a{0,64}b[0-9]{1,100}")
    assert not _outgrows_arrow_dfa(r"a{0,63}b[0-9]{1,100}")
    assert not _outgrows_arrow_dfa(r"a\{0,80}b{0,80}")


def test_a_custom_pattern_with_large_counted_repeats_keeps_its_detections_on_hyperscan() -> None:
    config = RedactionConfig(custom_patterns={"order_note": r"note:[a-z]{0,70}[0-9][a-z0-9]{0,90}"})
    fast, exact = _scanners(config)
    texts = ["note:abc1def and note:zz", "note:9", "x note:" + "a" * 75 + "1b"]
    values: list[str | None] = [*texts] * 200

    # Custom passes mark first and run on every candidate; this one on the binding as well.
    assert fast.hyperscan is not None and 0 in fast.binding_passes
    assert fast.passes[0][0] == config.custom_patterns["order_note"]
    assert _outcome(fast, values) == _outcome(exact, values)
    assert detect(texts, config)[0] == [(0, 12, "order_note")]


def test_file_names_with_an_at_sign_do_not_leave_the_hyperscan_prefilter() -> None:
    scanner = RedactionProcessor().scanner
    assert scanner.hyperscan is not None
    values = ["logo@2x.png", "icon@3X.SVG", "jane@example.com", "pkg@1.2.3.tar.gz", "jane%40example.io", "a@b.pngx"]

    passed, _, _ = scanner.hyperscan.scan_column(pa.array(values, pa.string()))

    assert passed.tolist() == [False, False, True, False, True, True]


def test_words_except_matches_every_run_but_the_words() -> None:
    words = ["png", "js", "p", "gz"]
    pattern = re.compile(f"(?i:{words_except(words, string.ascii_lowercase, 2)})")
    runs = ["".join(letters) for length in range(6) for letters in itertools.product("pngjsz1", repeat=length)]

    matched = {run for run in runs if pattern.fullmatch(run)}

    assert matched == {run for run in runs if len(run) >= 2 and run.isalpha() and run not in words}
    assert pattern.fullmatch("PNG") is None and pattern.fullmatch("Com") is not None


def test_dotted_quads_after_a_version_word_do_not_leave_the_hyperscan_prefilter() -> None:
    scanner = RedactionProcessor().scanner
    assert scanner.hyperscan is not None
    values = [
        "version 1.2.3.45",
        "Build=10.0.0.1",
        "v  192.168.0.1",
        "from 10.0.0.1",
        "Versions 10.0.0.1",
        "version   10.0.0.1",
        "fw\\n10.0.0.1",
        "10.0.0.1",
        "see x1.2.3.4 and 2.3.4.5.6",
    ]

    passed, _, _ = scanner.hyperscan.scan_column(pa.array(values, pa.string()))

    # A JSON escape passes whatever word stands before it (the validator reads it as a space: `fw 10.0.0.1`).
    assert passed.tolist() == [False, False, False, True, True, True, True, True, True]
    assert [bool(found) for found in detect(values)] == [False, False, False, True, True, True, False, True, False]


def test_digit_runs_after_a_word_that_makes_them_no_phone_do_not_leave_the_hyperscan_prefilter() -> None:
    scanner = RedactionProcessor().scanner
    assert scanner.hyperscan is not None
    values = [
        "invoice 1234-5678-90",
        "Order: (415) 555-0199",
        "ref - 415 555 0199",
        "reinvoice 415-555-0199",
        "invoice -- : 415-555-0199",
        "invoice -:\n415-555-0199",  # `\W{0,3}$` takes three characters and a final newline
        "invoice  -:\n415-555-0199",
        "invoice -:\\n415-555-0199",  # a JSON escape reads as one space
        "415-555-0199",
        "call 415-555-0199",
    ]

    passed, _, _ = scanner.hyperscan.scan_column(pa.array(values, pa.string()))

    # (A line of its own starts with a number: the multi-line scan passes it, the validator rejects it.)
    assert passed.tolist() == [False, False, False, True, True, True, True, True, True, True]
    assert [bool(found) for found in detect(values)] == [False, False, False, True, True, False, True, True, True, True]
