"""The redaction processor's column scans on Hyperscan: one multi-pattern pass over a column's values joined into one
buffer answers which values may hold a detection, which hold a gitleaks keyword, and which marking passes can match
in each, with the detections of the RE2 scans it replaces (see `HyperscanScans`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_Mask = npt.NDArray[np.bool_]

try:  # a declared dependency, but it has wheels for x86-64 only: elsewhere the processor keeps RE2 alone
    import hyperscan
except ImportError:  # pragma: no cover - exercised only where no wheel exists
    hyperscan = None  # type: ignore[assignment]

# The prefilter's values are joined by newlines, so that multi-line `^` and `$` hold at their edges; the marking
# patterns hold no anchors, and their values are joined by NUL, which text rarely holds.
_LINE_SEPARATOR: Final = "\n"
_NUL_SEPARATOR: Final = "\x00"
# Bytes on which Hyperscan (bytes, PCRE classes) and RE2 (UTF-8 code points) may disagree: any non-ASCII byte
# (a bounded repeat counts bytes, not characters; RE2 folds `ſ` to `s`) and VT, which PCRE's `\s` holds and RE2's
# does not. Values holding one get RE2's own answer; so do values holding a marking sentinel (\x01, \x03), which
# the processor replaces in every value the prefilter passes, so that it must pass no value RE2 would not.
# (The scans find them too, with a pattern of their own, the last of each database.)
_NEEDS_RE2: Final = r"[\x80-\xff\x01\x03\x0b]"
# Zero-width assertions that depend on the characters around a match; a marking pattern holding one of these other
# than `\b` is not restricted (marks change what stands around later candidates).
_CONTEXT_ASSERTIONS: Final = ("^", "$", "\\B", "\\A", "\\z", "\\Z", "\\G")


# Patterns are compiled into several databases, one per label (see `_Program`): Hyperscan's cost for one database of
# many patterns is not the sum of theirs. Measured on the redaction benchmark's corpora (benchmarks/redaction.py,
# 9.3 MB of realistic spans): the prefilter as one database 40 ms, one per detector 29 ms, with these labels 25 ms.
# The e-mail patterns (their top-level-domain complement of the file extensions) cost ~1 ms alone and ~14 ms more
# beside the others; the secret patterns and the gitleaks keywords, and the IBAN, card and SSN ones, share a
# database for less than apart.
NEEDS_RE2_DATABASE: Final = "needs_re2"
MARKING_DATABASE: Final = "marking"


@lru_cache(maxsize=16)
def hyperscan_scans(
    prefilters: tuple[tuple[str, str | None, str], ...],
    keyword_literals: str | None,
    short_rules: tuple[str, ...],
    pass_groups: tuple[tuple[tuple[str, ...], str] | None, ...],
    rules_database: str = "secret",
) -> HyperscanScans | None:
    """The scans for these patterns, compiled once per process (compiling takes about a second), or None where
    Hyperscan is not installed or a pattern is beyond what it compiles: the processor then keeps RE2 alone. (A
    refusal is cached too, so a pattern set beyond Hyperscan is not compiled again for every processor.)"""
    if hyperscan is None:
        return None
    try:
        return HyperscanScans(prefilters, keyword_literals, short_rules, pass_groups, rules_database)
    except hyperscan.error:
        return None


def _tokens(pattern: str) -> list[tuple[str, bool]]:
    """`pattern` as (token, inside a character class): escapes are one token, other characters one each."""
    tokens: list[tuple[str, bool]] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            tokens.append((pattern[index : index + 2], in_class))
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            tokens.append((char, False))
            index += 1
            in_class = True
            # `[]...]` and `[^]...]` hold a literal `]`.
            for lead in ("^", "]"):
                if pattern.startswith(lead, index):
                    tokens.append((lead, True))
                    index += 1
            continue
        tokens.append((char, in_class))
        index += 1
    return tokens


def _without_word_boundaries(pattern: str) -> str | None:
    """`pattern` with every `\\b` outside a character class dropped (so it matches wherever the pattern matches,
    whatever stands around the match), or None when the pattern holds another context assertion."""
    out: list[str] = []
    for token, in_class in _tokens(pattern):
        if not in_class and token == "\\b":
            out.append("(?:)")
        elif not in_class and token in _CONTEXT_ASSERTIONS:
            return None
        else:
            out.append(token)
    return "".join(out)


def _has_end_anchor(pattern: str) -> bool:
    """Whether `pattern` holds `$`, `\\z` or `\\Z` outside a character class."""
    return any(not in_class and token in ("$", "\\z", "\\Z") for token, in_class in _tokens(pattern))


def _compile(patterns: Sequence[tuple[str, int, int]], separator: str) -> Any:
    """A block-mode database of `(pattern, flags, id)`. Raises hyperscan.error for a pattern beyond Hyperscan (an end
    anchor inside a custom pattern, `(?:x$|y)z`): the processor then keeps RE2 alone.

    Each pattern runs on to the next separator: Hyperscan reports every end offset of every match, one Python
    call each (a digit-run pattern ends at every digit), and this way all the matches of one value end at one
    place, its separator, and cost one call (or one more per separator character inside the value)."""
    assert hyperscan is not None
    escaped = f"\\x{ord(separator):02x}"
    # (A pattern with `$` cannot run on: Hyperscan has no end anchor inside a pattern. It runs as written.)
    expressions = [
        pattern if _has_end_anchor(pattern) else f"(?:{pattern})[^{escaped}]*{escaped}" for pattern, _, _ in patterns
    ]
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[e.encode() for e in expressions],
        ids=[pattern_id for _, _, pattern_id in patterns],
        flags=[flag for _, flag, _ in patterns],
    )
    return database


class _Program:
    """Patterns, ids in order, compiled into one database per label (`(pattern, flags, label)`), scanned one after
    the other: their matches are those of one database of them all, with the same ids."""

    def __init__(self, patterns: Sequence[tuple[str, int, str]], separator: str) -> None:
        labels = list(dict.fromkeys(label for _, _, label in patterns))
        numbered = list(enumerate(patterns))
        self._databases = [
            _compile([(pattern, flags, number) for number, (pattern, flags, of) in numbered if of == label], separator)
            for label in labels
        ]
        # A scratch space serves one scan at a time: each thread gets its own, so scans run in parallel.
        self._scratch = threading.local()

    def matches(self, buffer: pa.Buffer | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(pattern id, end offset) of every match in `buffer`."""
        scratches: list[Any] | None = getattr(self._scratch, "spaces", None)
        if scratches is None:
            scratches = [hyperscan.Scratch(database) for database in self._databases]
            self._scratch.spaces = scratches
        ids: list[int] = []
        ends: list[int] = []

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            ids.append(pattern_id)
            ends.append(end)

        if buffer is not None:
            for database, scratch in zip(self._databases, scratches, strict=True):
                database.scan(buffer, match_event_handler=on_match, scratch=scratch)
        return np.asarray(ids, np.int64), np.asarray(ends, np.int64)


class HyperscanScans:
    """Hyperscan programs for one scanner, compiled once.

    Each column is scanned once, its values joined by newlines, in multi-line mode so that `^` and `$` hold at
    every value's edges; a match's end offset names its value (a match may run across a separator or start at a
    newline inside a value: the value then passes where RE2 would not say so). Its patterns are necessary conditions
    of the validators, as RE2's are, some of them tighter (a file extension is no top-level domain; a version word
    before a dotted quad or `invoice` before a digit run, looked at again on the values nothing else passes):
    whatever a value holds that Hyperscan does not pass, a validator would reject, so its answer changes no
    detection, only how many values reach Python.
    Values outside ASCII get RE2's answer, and so do values holding a sentinel character (the processor rewrites
    those in every value the prefilter passes, detection or not).

    The marking passes: a pass can mark a candidate only where its pattern, without its `\\b` assertions, matches
    the unmarked value (a match in marked text is sentinel-free, so a piece of the original, and dropping the
    assertions only widens the pattern); the passes run on those values only, which changes no mark.
    """

    def __init__(
        self,
        prefilters: Sequence[tuple[str, str | None, str]],
        keyword_literals: str | None,
        short_rules: Sequence[str],
        pass_groups: Sequence[tuple[Sequence[str], str] | None],
        rules_database: str,
    ) -> None:
        assert hyperscan is not None
        multiline = hyperscan.HS_FLAG_MULTILINE
        # Each detector pattern `(first, exact, database)`: `first` on the column; where it alone passes a value,
        # `exact` on it.
        prefilter_patterns = [(first, multiline, database) for first, _, database in prefilters]
        self._detector_ids = len(prefilter_patterns)
        exact = [(pattern, multiline, database) for _, pattern, database in prefilters if pattern is not None]
        self._second_look = _Program(exact, _LINE_SEPARATOR) if exact else None
        if keyword_literals:
            prefilter_patterns.append((keyword_literals, multiline | hyperscan.HS_FLAG_CASELESS, rules_database))
        prefilter_patterns += [(pattern, multiline, rules_database) for pattern in short_rules]
        prefilter_patterns.append((_NEEDS_RE2, 0, NEEDS_RE2_DATABASE))
        self._needs_re2_id = len(prefilter_patterns) - 1
        self._prefilter = _Program(prefilter_patterns, _LINE_SEPARATOR)
        self._has_second_look = np.zeros(len(prefilter_patterns), np.bool_)
        self._has_second_look[[index for index, (_, pattern, _) in enumerate(prefilters) if pattern is not None]] = True
        # Marking: one id per restricted pass group (None: the group runs on every candidate).
        self.restricted: list[bool] = []
        group_patterns: list[tuple[str, int, str]] = []
        self._group_of_id: list[int] = []
        for group_index, group in enumerate(pass_groups):
            widened = [_without_word_boundaries(pattern) for pattern in group[0]] if group is not None else [None]
            if group is None or any(pattern is None for pattern in widened):
                self.restricted.append(False)
                continue
            self.restricted.append(True)
            for pattern in widened:
                assert pattern is not None
                group_patterns.append((pattern, 0, group[1]))
                self._group_of_id.append(group_index)
        group_patterns.append((_NEEDS_RE2, 0, MARKING_DATABASE))
        self._group_of_id.append(-1)
        self._groups = _Program(group_patterns, _NUL_SEPARATOR)
        self._group_count = len(self.restricted)

    def scan_column(self, values: pa.Array) -> tuple[_Mask, _Mask, _Mask]:
        """(Hyperscan passes the value, Hyperscan finds a keyword or short rule, the value needs RE2's answer:
        outside ASCII or holding a sentinel)."""
        count = len(values)
        hits = np.zeros(count, np.bool_)
        keyed = np.zeros(count, np.bool_)
        outside = np.zeros(count, np.bool_)
        buffer, starts = _joined(values, _LINE_SEPARATOR)
        ids, ends = self._prefilter.matches(buffer)
        if len(ids):
            owners = np.searchsorted(starts, ends - 1, side="right") - 1
            needs_re2 = ids == self._needs_re2_id
            outside[owners[needs_re2]] = True
            second_look = self._has_second_look[ids]
            hits[owners[~needs_re2 & ~second_look]] = True
            keyed[owners[(ids >= self._detector_ids) & ~needs_re2]] = True
            looked = np.zeros(count, np.bool_)
            looked[owners[second_look]] = True
            looked &= ~hits
            if looked.any():
                hits[self._looked_again(values, looked)] = True
        return hits, keyed, outside

    def _looked_again(self, values: pa.Array, looked: _Mask) -> npt.NDArray[np.int64]:
        """Positions of the values among `looked` that some pattern's exact form passes."""
        assert self._second_look is not None  # a value is looked at again only through a pattern that has one
        where = np.flatnonzero(looked)
        buffer, starts = _joined(values.take(pa.array(where)), _LINE_SEPARATOR)
        ids, ends = self._second_look.matches(buffer)
        if len(ids) == 0:
            return where[:0]
        return where[np.unique(np.searchsorted(starts, ends - 1, side="right") - 1)]

    def group_matches(self, values: pa.Array) -> npt.NDArray[np.bool_]:
        """values x pass groups: whether the group's passes may mark something in the value."""
        count = len(values)
        may_match = np.zeros((count, self._group_count), np.bool_)
        may_match[:, [index for index, restricted in enumerate(self.restricted) if not restricted]] = True
        if count == 0:
            return may_match
        buffer, starts = _joined(values, _NUL_SEPARATOR)
        ids, ends = self._groups.matches(buffer)
        if len(ids):
            owners = np.searchsorted(starts, ends - 1, side="right") - 1
            groups = np.asarray(self._group_of_id, np.int64)[ids]
            may_match[owners[groups < 0]] = True  # outside ASCII: every group runs
            may_match[owners[groups >= 0], groups[groups >= 0]] = True
        return may_match


def _joined(values: pa.Array, separator: str) -> tuple[pa.Buffer | None, npt.NDArray[np.int64]]:
    """The values, each followed by `separator`, as one buffer (None when empty), and where each value starts in it
    (plus the end). The buffer is Arrow's own: Hyperscan reads it through the buffer protocol, without a copy."""
    joined = pc.binary_join_element_wise(values, "", separator, null_handling="replace", null_replacement="")
    offsets = np.frombuffer(joined.buffers()[1], np.int32, len(joined) + 1, joined.offset * 4).astype(np.int64)
    data = joined.buffers()[2]
    buffer = data[offsets[0] : offsets[-1]] if data is not None and offsets[-1] > offsets[0] else None
    return buffer, offsets - offsets[0]
