"""benchmarks/ingest_native.py at smoke size: every mode (the Python path, chDB decoding the OTLP protobuf into our
spans table, with SQL digests, with the SQL redaction prefilters, and the insert floors) runs on the benchmark's
agent spans and stores every span; the native rows equal the Python path's, the SQL digests the Python ones, and
the prefilters flag every seeded span the Python path redacts."""

from __future__ import annotations

import re

from tests.benchmarks.running import run_benchmark

MODES = {
    "python (ingest_stages)": ["parse", "decode", "normalize", "redaction", "spool encode", "spool decode", "export"],
    "native decode only": ["spool (raw bytes, fsync)", "decode+flatten (FORMAT Null)"],
    "native": ["spool (raw bytes, fsync)", "insert (decode+flatten+views)"],
    "native+digests": ["spool (raw bytes, fsync)", "decode+digests into staging", "insert from staging (+views)",
                       "read keys+digests", "audit chain (screen+links)"],
    "floor ZSTD content, views": ["insert_arrow"],
    "floor ZSTD content, no views": ["insert_arrow"],
    "floor LZ4 content, views": ["insert_arrow"],
    "floor LZ4 content, no views": ["insert_arrow"],
}  # fmt: skip
MODES["native+prefilter hyperscan"] = MODES["native+prefilter re2"] = MODES["native+digests"]
ORDER = ["python (ingest_stages)", "native decode only", "native", "native+digests", "native+prefilter hyperscan",
         "native+prefilter re2", "floor ZSTD content, views", "floor ZSTD content, no views",
         "floor LZ4 content, views", "floor LZ4 content, no views"]  # fmt: skip
FIGURES = r" +[0-9]+\.[0-9]{2} +([0-9,]+|inf)"


def test_the_native_ingest_benchmark_runs_at_smoke_size_and_checks_what_it_stored() -> None:
    lines = run_benchmark("ingest_native.py", "--smoke").splitlines()

    assert lines[0] == "workload: 1000 spans in 4 requests, 3 MB protobuf, exported 500 at a time"
    assert lines[1].split() == ["mode", "/", "stage", "CPU", "s/100k", "spans/s/core"]
    expected = [name for mode in ORDER for name in [mode, *(f"  {stage}" for stage in MODES[mode])]]
    rows = lines[2 : 2 + len(expected)]
    assert [row[:34].rstrip() for row in rows] == expected
    for row in rows:
        assert re.fullmatch(r".{34}" + FIGURES, row), row
    rest = lines[2 + len(expected) :]
    assert (
        rest[0] == "stored: all 1000 spans in each mode and repeat (1); chained in python and native+digests/prefilter"
    )
    assert rest[1] == ("native vs python rows: 1000 spans in both; 56 of 56 columns equal on every span;"
                       " differing: none")  # fmt: skip
    assert rest[2] == "native+digests vs python rows: 1000 spans in both; differing: none"
    assert rest[3] == ("digests: SQL (digest_sql) == Python (span_digest) on all 1000 stored native rows;"
                       " native chain == python chain on 1000 of 1000 spans")  # fmt: skip
    for line, engine in zip(rest[4:6], ("hyperscan", "re2"), strict=True):
        assert re.fullmatch(
            rf"native\+prefilter {engine} \(last run\): 0 of 1000 rows flagged for Python redaction"
            r" \([0-9]+ patterns\), every one of the 0 the Python path redacted among them;"
            r" 0 flagged for the Python decoder",
            line,
        ), line
    # Only the span of arrays, kvlists and exponent-written doubles differs (its attributes), and it is flagged.
    assert rest[6] == ("decoder parity on 7 crafted spans (5 stored by both): differing: attributes (1); 2 flagged"
                       " for the Python decoder, 0 differing span(s) not flagged")  # fmt: skip
    assert rest[7] == ("prefilter on 60 seeded spans (6 kinds of personal data and secrets in every third): python"
                       " redacted 20, all flagged; hyperscan flagged 20, re2 flagged 20")  # fmt: skip
    figure = re.fullmatch(r"per collector core \(spans / CPU second\): python ([0-9]+), (native\+prefilter"
                          r" (hyperscan|re2)) ([0-9]+) spans/s", rest[8])  # fmt: skip
    assert figure is not None and int(figure[1]) > 0 and int(figure[4]) > 0, rest[8]
    assert len(rest) == 9
