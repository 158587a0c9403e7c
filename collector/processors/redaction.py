"""The `redaction` processor: masks, pseudonymises or drops personal data and secrets in every text a span batch
carries, over whole Arrow columns (RE2 through pyarrow.compute), and records per span what it redacted (counts only).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import re2
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from agentledger.collector.component import SpanBatch
from agentledger.collector.processors.redaction_detectors import (
    BUILTIN_ENTITIES,
    CONTEXT_CHARS,
    DEFAULT_PHONE_REGIONS,
    NER_ENTITIES,
    Detector,
    SecondLook,
    build_detectors,
    custom_detector,
    normal_secret,
)
from agentledger.collector.processors.redaction_hyperscan import MARKING_DATABASE, HyperscanScans, hyperscan_scans
from agentledger.collector.processors.redaction_ner import NerRedactor, load_ner, ner_problem
from agentledger.collector.processors.redaction_rules import SecretRuleSet, found_in, gitleaks_rules
from agentledger.schema import conventions as conv
from agentledger.schema.span_columns import PROMOTED_COLUMNS, SPAN_SCHEMA

Mode = Literal["mask", "pseudonym", "drop"]

KEY = "processors.redaction"
MIN_HMAC_KEY_LENGTH: Final = 32
BLOCKED_KEY_ENTITY: Final = "blocked_key"
SUMMARY_KEY: Final = conv.AGENTLEDGER_REDACTION_SUMMARY
BLOCKED_VALUE: Final = "[REDACTED]"

# Never touched by default: identifiers and hashes responders join on, which the emitter computed before any
# redaction (a changed context hash would no longer prove anything).
DEFAULT_KEEP_KEYS: Final = (
    conv.AGENT_RUN_ID,
    conv.AGENTLEDGER_PROMPT_CONTEXT_HASH,
    conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH,
    "*_hash",
    "*.hash",
    conv.GEN_AI_TOOL_CALL_ID,
    conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID,
    conv.AGENTLEDGER_WRITE_TOOL_CALL_ID,
    conv.GEN_AI_AGENT_ID,
    conv.GEN_AI_CONVERSATION_ID,
    "session.id",
    "service.instance.id",
    "telemetry.sdk.*",
)
# Masked whole, whatever the value looks like (the OTel processor's `blocked_key_patterns`).
DEFAULT_MASK_KEYS: Final = (
    "*authorization*",
    "*password*",
    "*passwd*",
    "*secret*",
    "*cookie*",
    "*api_key*",
    "*apikey*",
    "*private_key*",
)
# Envelope columns that are identifiers or enumerations, never free text.
_UNSCANNED_COLUMNS: Final = frozenset(
    {"tenant", "run_id", "trace_id", "span_id", "parent_span_id", "kind", "status_code", "scope_version"}
)
_FREE_TEXT_COLUMNS: Final = ("name", "status_message", "service_name", "scope_name")
_LIST_OF_STRING_COLUMNS: Final = ("event_names",)
_MAP_COLUMNS: Final = ("attributes", "resource_attributes")
_LIST_OF_MAP_COLUMNS: Final = ("event_attributes", "link_attributes")
# Sentinels around marked candidates: ASCII controls, because pyarrow's RE2 rewrite mangles non-ASCII
# replacement text that contains group references.
# Marks are `\x01`, one character naming the detector (from `_FIRST_INDEX` on), the candidate, `\x03`.
_OPEN, _CLOSE = "\x01", "\x03"
_FIRST_INDEX: Final = 0x10
# Index characters stay in 0x10-0x1F: not whitespace, not word characters, so no pattern can start on one.
MAX_DETECTORS: Final = 0x20 - _FIRST_INDEX
_SENTINEL_CLASS: Final = "[\x01\x03]"
# Splits marked text into text, token, text, ...: a token is an opening (`\x01` and the detector) or a closing.
_MARK_TOKENS: Final = re.compile("(\x01.|\x03)", re.DOTALL)
_SENTINELS: Final = re.compile(_SENTINEL_CLASS)
# Below this many characters a scan runs on RE2 programs compiled once in Python, not through pyarrow.compute,
# which compiles its pattern on every call (~2 ms for the combined one, whatever the input's size).
SMALL_INPUT_CHARS: Final = 16_384
PSEUDONYM_HEX_DIGITS: Final = 12
# A marking pass runs on just the values Hyperscan says it may mark while they are under this share of the values.
_RESTRICTED_SHARE: Final = 0.75
_ESCAPE_LETTERS: Final = ("n", "r", "t", "b", "f")
_TRAILING_ESCAPE: Final = re.compile(r"(?<!\\)\\[nrtbf]$")
_CUSTOM_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class RedactionConfig(BaseModel):
    """What to redact and how; validated once, at construction, with errors naming the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Built-in entities to detect; `person` and `address` need the optional `[ner]` extra (Presidio).
    entities: tuple[str, ...] = BUILTIN_ENTITIES
    # Entity name -> mode; entities not named use `default_mode`.
    modes: Mapping[str, Mode] = Field(default_factory=dict)
    default_mode: Mode = "mask"
    # Entity name -> RE2 pattern (also valid Python `re`); always detected, masked as `[NAME]`.
    custom_patterns: Mapping[str, str] = Field(default_factory=dict)
    # Attribute keys (fnmatch globs, case-insensitive) never touched, and keys whose values are masked whole.
    keep_keys: tuple[str, ...] = DEFAULT_KEEP_KEYS
    mask_keys: tuple[str, ...] = DEFAULT_MASK_KEYS
    # Key of the HMAC-SHA256 pseudonyms; needed when any entity uses mode `pseudonym`. Give exactly one of:
    # the key itself, a file holding it (`hmac_key_file`, trailing newline ignored), or the name of an
    # environment variable holding it (`hmac_key_env`); files and variables are read once, at startup.
    hmac_key: SecretStr | None = None
    hmac_key_file: Path | None = None
    hmac_key_env: str | None = None
    # Regions (libphonenumber codes, e.g. US, GB, FR) a phone number without a country code may belong to,
    # tried in order.
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    # Secrets also by gitleaks' rule set (vendored, see collector/processors/secret_rules/README.md).
    gitleaks_rules: bool = True
    # spaCy model name or path Presidio loads for `person` and `address`.
    ner_model: str = "en_core_web_lg"
    _pseudonym_key: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> RedactionConfig:
        if len(self.custom_patterns) > MAX_DETECTORS - len(BUILTIN_ENTITIES):
            raise ValueError(
                f"{KEY}.custom_patterns holds {len(self.custom_patterns)} patterns; at most"
                f" {MAX_DETECTORS - len(BUILTIN_ENTITIES)} are supported (join related ones with |)."
            )
        for name, pattern in self.custom_patterns.items():
            _check_custom_pattern(name, pattern)
        known = (*BUILTIN_ENTITIES, *NER_ENTITIES)
        for entity in self.entities:
            if entity not in known:
                raise ValueError(
                    f"{KEY}.entities: unknown entity {entity!r}; known entities are {', '.join(known)}"
                    " (custom patterns are listed under custom_patterns, not here)."
                )
        for entity in self.modes:
            if entity not in known and entity not in self.custom_patterns:
                raise ValueError(
                    f"{KEY}.modes: unknown entity {entity!r}; it is neither built in nor a custom pattern."
                )
        ner_entities = [entity for entity in self.entities if entity in NER_ENTITIES]
        if ner_entities:
            problem = ner_problem(ner_entities, self.ner_model, f"{KEY}.entities")
            if problem is not None:
                raise ValueError(problem)
        unknown_regions = [region for region in self.phone_regions if region not in phonenumbers.SUPPORTED_REGIONS]
        if unknown_regions or not self.phone_regions:
            raise ValueError(
                f"{KEY}.phone_regions: {', '.join(unknown_regions) or 'an empty list'} is not a list of"
                " libphonenumber region codes (two upper-case letters such as US, GB, FR)."
            )
        self._resolve_hmac_key()
        uses_pseudonyms = self.default_mode == "pseudonym" or "pseudonym" in self.modes.values()
        source = next(
            (name for name in ("hmac_key_file", "hmac_key_env") if getattr(self, name) is not None), "hmac_key"
        )
        if self._pseudonym_key is None:
            if uses_pseudonyms:
                raise ValueError(
                    f"{KEY}.hmac_key is required when an entity uses mode 'pseudonym' (or hmac_key_file, hmac_key_env)."
                )
        elif len(self._pseudonym_key.get_secret_value()) < MIN_HMAC_KEY_LENGTH:
            raise ValueError(
                f"{KEY}.{source} must be at least {MIN_HMAC_KEY_LENGTH} characters long, so that pseudonyms"
                " cannot be reversed by hashing guessed values; it has"
                f" {len(self._pseudonym_key.get_secret_value())}."
            )
        return self

    def _resolve_hmac_key(self) -> None:
        sources = [name for name in ("hmac_key", "hmac_key_file", "hmac_key_env") if getattr(self, name) is not None]
        if len(sources) > 1:
            raise ValueError(f"{KEY}: give only one of {' and '.join(sources)}; they all set the pseudonym key.")
        key: str | None = None
        if self.hmac_key_file is not None:
            try:
                key = self.hmac_key_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(
                    f"{KEY}.hmac_key_file: cannot read the key from {str(self.hmac_key_file)!r}"
                    f" ({getattr(error, 'strerror', None) or error})."
                ) from None
        elif self.hmac_key_env is not None:
            key = os.environ.get(self.hmac_key_env)
            if not key:
                raise ValueError(
                    f"{KEY}.hmac_key_env names the environment variable {self.hmac_key_env!r}, which is not set"
                    " or empty."
                )
        elif self.hmac_key is not None:
            key = self.hmac_key.get_secret_value()
        self._pseudonym_key = SecretStr(key) if key is not None else None

    @property
    def pseudonym_key(self) -> SecretStr | None:
        """The HMAC key, from whichever of `hmac_key`, `hmac_key_file` or `hmac_key_env` was given."""
        return self._pseudonym_key

    def mode_of(self, entity: str) -> Mode:
        return self.modes.get(entity, self.default_mode)


def _check_custom_pattern(name: str, pattern: str) -> None:
    where = f"{KEY}.custom_patterns.{name}"
    if not _CUSTOM_NAME.match(name) or name in BUILTIN_ENTITIES or name in NER_ENTITIES or name == BLOCKED_KEY_ENTITY:
        raise ValueError(
            f"{KEY}.custom_patterns: the name {name!r} must be lower-case letters, digits and underscores,"
            " and must not be a built-in entity."
        )
    try:
        re.compile(pattern)
        pc.match_substring_regex(pa.array([""]), pattern)
    except (re.error, pa.ArrowInvalid) as error:
        raise ValueError(f"{where} is not a valid regular expression (RE2 syntax): {error}") from None
    if re.fullmatch(pattern, ""):
        raise ValueError(f"{where} matches the empty string, which would redact nothing but cost every value.")
    if re.compile(pattern).groups:
        raise ValueError(f"{where} must not use capturing groups; write (?:...) instead.")


def _glob_matcher(globs: Sequence[str]) -> Callable[[str], bool]:
    compiled = re.compile("|".join(fnmatch.translate(glob.lower()) for glob in globs)) if globs else None
    return lambda key: compiled is not None and compiled.match(key.lower()) is not None


_GITLEAKS: Final = "gitleaks"


class _Scanner:
    """Everything a scan needs that depends on the config only, compiled once per processor.

    A single RE2 alternation of every detector answers "does this value hold a candidate" at DFA speed, but
    replacing with it makes RE2 fall back to its slow NFA (the combined program outgrows the DFA's memory),
    so the values with candidates are then marked one small pattern at a time: `\x01<detector>` ... `\x03`
    around each candidate. Patterns never match the sentinels, so a later pass marks only inside or outside
    an earlier mark, and Python resolves the nesting: the outer candidate wins if its validator accepts it,
    otherwise the candidates inside it get their turn (a rejected "card" may hold a real phone number).
    Secrets of the gitleaks rule set are found by their own rules on the values holding one of their keywords
    and join the marked candidates.
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        config: RedactionConfig,
        rules: SecretRuleSet | None,
        use_hyperscan: bool = True,
    ) -> None:
        self.detectors = tuple(detectors)
        self.rules = rules
        patterns = [pattern for d in self.detectors for pattern in d.prefilter_patterns]
        self.combined = _alternation(patterns)
        # The columnar prefilter: one RE2 program of every detector's prefilter pattern (one scan beats two smaller
        # ones), and (in `_Scan.run`) the gitleaks keywords, whose case-insensitive literals run fastest on their own.
        self.column_prefilters = (self.combined,) if self.detectors else ()
        # Custom patterns mark first: they are the user's own, and a broad built-in candidate (a digit run)
        # must not split one of theirs (`EMP-004211`).
        # Then a phone number's candidate before the card and SSN ones it may contain (`+255 800 12 3937`): a
        # later pass cannot mark across an earlier mark, while a rejected outer candidate leaves the inner
        # ones their turn. IBANs before phones, for the same reason the other way round.
        order = range(len(self.detectors))
        passes = [
            (_pass_rank(self.detectors[index], part), pattern, chr(_FIRST_INDEX + index))
            for index in order
            for part, pattern in enumerate(self.detectors[index].mark_patterns)
        ]
        self.passes = [(pattern, marker) for _, pattern, marker in sorted(passes, key=lambda item: item[0])]
        # Consecutive passes of one detector (the secret key-name patterns) with one alternation of them: a value it
        # does not match skips the whole run of passes, since no part can then match either (none marks before).
        self.pass_groups: list[tuple[str | None, list[tuple[str, str]]]] = []
        for pattern, marker in self.passes:
            if self.pass_groups and self.pass_groups[-1][1][-1][1] == marker:
                self.pass_groups[-1][1].append((pattern, marker))
            else:
                self.pass_groups.append((None, [(pattern, marker)]))
        self.pass_groups = [
            (_alternation([pattern for pattern, _ in group]) if len(group) > 1 else None, group)
            for _, group in self.pass_groups
        ]
        self.tokens = {d.entity: d.entity.upper() for d in self.detectors}
        self.modes = {d.entity: config.mode_of(d.entity) for d in self.detectors}
        self.modes.setdefault("secret", config.mode_of("secret"))
        key = config.pseudonym_key
        self.key = key.get_secret_value().encode() if key is not None else b""
        self.secret_detector = next((d for d in self.detectors if d.entity == "secret"), None)
        # The same programs for small inputs, compiled here once (RE2 semantics either way).
        small = [self.combined] if self.detectors else []
        if rules is not None:
            small.append(rules.keyword_pattern)
        self.small_combined = _re2(_alternation(small)) if small else None
        self.small_passes = [(_re2(pattern), marker) for pattern, marker in self.passes]
        # Passes whose pattern outgrows the DFA memory of pyarrow's RE2 (8 MB, fixed) run on these programs, with 64 MB,
        # on the values Hyperscan names: RE2 either way, ~3x faster there than pyarrow's NFA fallback.
        self.binding_passes = {
            index: program
            for index, (program, _) in enumerate(self.small_passes)
            if _outgrows_arrow_dfa(self.passes[index][0])
        }
        self.small_rules = _re2(rules.keyword_pattern) if rules is not None else None
        hyperscan_prefilters = [
            (pattern.first, pattern.exact, _hyperscan_database(d))
            if isinstance(pattern, SecondLook)
            else (pattern, None, _hyperscan_database(d))
            for d in self.detectors
            for pattern in (d.hyperscan_prefilter or d.prefilter_patterns)
        ]
        self.hyperscan = self._hyperscan(hyperscan_prefilters) if use_hyperscan else None

    def _hyperscan(self, prefilters: Sequence[tuple[str, str | None, str]]) -> HyperscanScans | None:
        """The column scans on Hyperscan, or None (RE2 alone) where a pattern is beyond what it compiles."""
        # One group per pass: each pass runs on the values its own pattern may mark (a secret value that one of the
        # six secret passes may mark need not meet the other five). A custom pattern's passes run on every
        # candidate: its marks are not bound to `\b` alone.
        groups = [
            None
            if self.detectors[ord(marker) - _FIRST_INDEX].reason == "custom"
            else ((pattern,), _marking_database(self.detectors[ord(marker) - _FIRST_INDEX]))
            for pattern, marker in self.passes
        ]
        rules = self.rules
        return hyperscan_scans(
            tuple(prefilters),
            rules.keyword_literals if rules is not None else None,
            rules.short_rule_patterns if rules is not None else (),
            tuple(groups),
            _hyperscan_database(self.secret_detector) if self.secret_detector is not None else "secret",
        )

    def replacement(self, entity: str, value: str, normalise: Callable[[str], str]) -> str:
        mode = self.modes[entity]
        if mode == "drop":
            return ""
        if mode == "mask":
            return f"[{self.tokens.get(entity, entity.upper())}]"
        # Only a pseudonym needs the normalised value (parsing an IP address or a phone number costs).
        digest = hmac.new(self.key, normalise(value).encode(), hashlib.sha256).hexdigest()
        return f"<{entity}:{digest[:PSEUDONYM_HEX_DIGITS]}>"


# Hyperscan databases (see redaction_hyperscan's labels, with the figures): detectors named here share one, every
# other detector has its own; the gitleaks keywords join the secret detector's. In the marking scan only the e-mail
# pass has a database of its own (~2 ms less there, on 3,000 dense values).
_SHARED_HYPERSCAN_DATABASES: Final = {"card": "iban", "ssn": "iban"}
_OWN_MARKING_DATABASE: Final = frozenset({"email"})


def _hyperscan_database(detector: Detector) -> str:
    if detector.reason == "custom":
        return "custom"
    return _SHARED_HYPERSCAN_DATABASES.get(detector.entity, detector.entity)


def _marking_database(detector: Detector) -> str:
    return detector.entity if detector.entity in _OWN_MARKING_DATABASE else MARKING_DATABASE


# (entity, pattern part) in marking order; an SSN after its keyword (part 1) before the phone digit runs.
_PASS_ORDER: Final = ("secret", "email", "iban", "ip/0", "ssn/1", "phone", "card", "ssn", "ip")


def _pass_rank(detector: Detector, part: int) -> int:
    if detector.reason == "custom":
        return -1
    for name in (f"{detector.entity}/{part}", detector.entity):
        if name in _PASS_ORDER:
            return _PASS_ORDER.index(name)
    return len(_PASS_ORDER)


def _alternation(patterns: Sequence[str]) -> str:
    return patterns[0] if len(patterns) == 1 else "|".join(f"(?:{pattern})" for pattern in patterns)


def _re2(pattern: str) -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20
    return re2.compile(pattern, options)


class _Scan:
    """One detection run over a flat string array; collects which values had which entity."""

    def __init__(self, scanner: _Scanner) -> None:
        self._scanner = scanner
        self.found: dict[str, list[int]] = {}
        # (value position, entity, start, end, reason) in the original value, when the caller asks.
        self.spans: list[tuple[int, str, int, int, str]] | None = None

    def run(self, values: pa.Array) -> pa.Array:
        scanner = self._scanner
        if scanner.small_combined is None or len(values) == 0:
            return values
        if len(values) <= 256 and (pc.sum(pc.utf8_length(values)).as_py() or 0) < SMALL_INPUT_CHARS:
            return self._run_small(values)
        hits, keyed_all = self._prefilter(values)
        if not pc.any(hits).as_py():
            return values
        positions = pc.indices_nonzero(hits).to_numpy()
        candidates = values.filter(hits)
        keyed_hits = keyed_all.filter(hits) if keyed_all is not None else None
        # Spans of one batch repeat values (system prompts, tool descriptions, the same error): each distinct value
        # is marked and validated once; its result and detections then stand for every copy.
        encoded = pc.dictionary_encode(candidates)
        copies: npt.NDArray[np.int64] | None = None
        if len(encoded.dictionary) < len(candidates):
            copies = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            first = np.unique(copies, return_index=True)[1]  # dictionary order is first-occurrence order
            candidates = encoded.dictionary
            keyed_hits = keyed_hits.take(pa.array(first)) if keyed_hits is not None else None
        # Values that already hold our sentinel characters would confuse the marking; U+FFFD takes their place.
        if pc.any(pc.match_substring_regex(candidates, _SENTINEL_CLASS)).as_py():
            candidates = pc.replace_substring_regex(candidates, _SENTINEL_CLASS, "\ufffd")
        marked = candidates
        if scanner.hyperscan is not None:
            may_match = scanner.hyperscan.group_matches(candidates)
            for pass_index, (pattern, marker) in enumerate(scanner.passes):
                program = scanner.binding_passes.get(pass_index)
                marked = _mark_pass(marked, pattern, marker, may_match[:, pass_index], program)
        else:
            for group_pattern, group in scanner.pass_groups:
                marked = _mark_group(marked, group_pattern, group)
        with_keywords = keyed_hits.to_pylist() if keyed_hits is not None else None
        if copies is None:
            replaced: list[str] = []
            for index, (position, text, original) in enumerate(
                zip(positions.tolist(), marked.to_pylist(), candidates.to_pylist(), strict=True)
            ):
                keyed = with_keywords is not None and bool(with_keywords[index])
                replaced.append(self._value(position, text, original, keyed))
            return pc.replace_with_mask(values, hits, pa.array(replaced, pa.string()))
        # Once per distinct value, recorded under its dictionary index, then copied to every position holding it.
        distinct = _Scan(scanner)
        distinct.spans = [] if self.spans is not None else None
        results = [
            distinct._value(index, text, original, with_keywords is not None and bool(with_keywords[index]))
            for index, (text, original) in enumerate(zip(marked.to_pylist(), candidates.to_pylist(), strict=True))
        ]
        holders: list[list[int]] = [[] for _ in results]
        for position, index in zip(positions.tolist(), copies.tolist(), strict=True):
            holders[index].append(position)
        for entity, indices in distinct.found.items():
            self.found.setdefault(entity, []).extend(position for index in indices for position in holders[index])
        if self.spans is not None and distinct.spans is not None:
            for index, entity, start, end, reason in distinct.spans:
                self.spans.extend((position, entity, start, end, reason) for position in holders[index])
        replaced_all = pa.array(results, pa.string()).take(pa.array(copies))
        return pc.replace_with_mask(values, hits, replaced_all)

    def _prefilter(self, values: pa.Array) -> tuple[pa.Array, pa.Array | None]:
        """(values holding a candidate of some detector or a gitleaks keyword, values holding a keyword): RE2's
        answers, on Hyperscan where it is available (then its superset, with RE2's own answer for values outside
        ASCII, see HyperscanScans), so that no detection changes."""
        scanner = self._scanner
        if scanner.hyperscan is not None:
            # Only the values that hold text: a batch's flat array is mostly empty values (each span's unset promoted
            # columns), which hold no detection, and joining them for Hyperscan cost more than scanning the text
            # (560,000 values, 500,000 empty, in the benchmark's realistic spans).
            present = np.flatnonzero(pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False))
            texts = values if len(present) == len(values) else values.take(pa.array(present))
            hits_np, keyed_np, outside = scanner.hyperscan.scan_column(texts)
            # Those few values on the RE2 programs compiled once (pyarrow.compute would compile its patterns again).
            combined, rules = scanner.small_combined, scanner.small_rules
            assert combined is not None  # run() returns early without detectors or rules
            where = np.flatnonzero(outside)
            for position, text in zip(where.tolist(), texts.take(pa.array(where)).to_pylist(), strict=True):
                hits_np[position] = text is not None and found_in(combined, text)
                keyed_np[position] = text is not None and rules is not None and found_in(rules, text)
            if len(present) < len(values):
                hits_all, keyed_all = np.zeros(len(values), np.bool_), np.zeros(len(values), np.bool_)
                hits_all[present], keyed_all[present] = hits_np, keyed_np
                hits_np, keyed_np = hits_all, keyed_all
            return pa.array(hits_np), pa.array(keyed_np) if scanner.rules is not None else None
        return self._re2_prefilter(values)

    def _re2_prefilter(self, values: pa.Array) -> tuple[pa.Array, pa.Array | None]:
        scanner = self._scanner
        hits = None
        for prefilter in scanner.column_prefilters:
            matched = pc.match_substring_regex(values, prefilter)
            hits = matched if hits is None else pc.or_(hits, matched)
        keyed_all: pa.Array | None = None
        if scanner.rules is not None:
            # (The keywords' case-insensitive literal alternation is fastest on its own, with RE2's option.)
            keyed_all = pc.or_(
                pc.match_substring_regex(values, scanner.rules.keyword_literals, ignore_case=True),
                pc.match_substring_regex(values, scanner.rules.short_rule_pattern),
            )
            hits = keyed_all if hits is None else pc.or_(hits, keyed_all)
        assert hits is not None  # run() returns early with neither detectors nor rules
        return hits, keyed_all

    def _run_small(self, values: pa.Array) -> pa.Array:
        scanner = self._scanner
        combined = scanner.small_combined
        assert combined is not None  # run() returns early without detectors
        texts = values.to_pylist()
        changed = False
        for position, text in enumerate(texts):
            if not text or not combined.search(text):
                continue
            original = _SENTINELS.sub("\ufffd", text) if _SENTINELS.search(text) else text
            marked = original
            for regex, marker in scanner.small_passes:
                marked = regex.sub(lambda found, marker=marker: f"{_OPEN}{marker}{found.group(0)}{_CLOSE}", marked)
            keyed = scanner.small_rules is not None and scanner.small_rules.search(original) is not None
            redacted = self._value(position, marked, original, keyed)
            if redacted != text:
                texts[position] = redacted
                changed = True
        return pa.array(texts, pa.string()) if changed else values

    def _value(self, position: int, marked: str, original: str, keyed: bool) -> str:
        redacted = self._redact(position, marked, original, keyed)
        if redacted != original and original[:1] in "[{" and not _still_json(original, redacted):
            # A replacement broke a JSON document (an escape we did not foresee): keep nothing of it.
            self.found.setdefault(BLOCKED_KEY_ENTITY, []).append(position)
            return BLOCKED_VALUE
        return redacted

    def _redact(self, position: int, marked: str, original: str, keyed: bool) -> str:
        scanner = self._scanner
        candidates = _candidates(marked)
        # Secrets the gitleaks rules find join the marked candidates with a negative index naming their rule.
        rule_ids: list[str] = []
        if keyed and scanner.rules is not None:
            extra: list[tuple[int, int, int]] = []
            for start, end, rule in scanner.rules.find(original):
                extra.append((start, end, -1 - len(rule_ids)))
                rule_ids.append(rule)
            if extra:
                candidates = sorted(candidates + extra, key=lambda candidate: (candidate[0], -candidate[1]))
        pieces: list[str] = []
        done = 0
        detectors, found, spans, take = scanner.detectors, self.found, self.spans, self._take
        for start, end, index in candidates:
            if start < done:
                continue  # inside a candidate already redacted
            if index < 0:  # a gitleaks rule found it: the span is the secret itself
                entity, secret_start, secret = "secret", start, original[start:end]
                reason = f"gitleaks rule {rule_ids[-1 - index]}"
                normalise: Callable[[str], str] = normal_secret
            else:
                detector = detectors[index]
                taken = take(detector, original, start, end)
                if taken is None:
                    continue
                secret_start, secret = taken
                entity, reason, normalise = detector.entity, detector.reason, detector.normalise
            found.setdefault(entity, []).append(position)
            if spans is not None:
                spans.append((position, entity, secret_start, secret_start + len(secret), reason))
            pieces.append(original[done:secret_start])
            pieces.append(scanner.replacement(entity, secret, normalise))
            done = secret_start + len(secret)
        if not pieces:
            return original
        pieces.append(original[done:])
        return "".join(pieces)

    @staticmethod
    def _take(detector: Detector, original: str, start: int, end: int) -> tuple[int, str] | None:
        """(start, text) of the part of a marked candidate to redact, or None when its validator rejects it."""
        if original.startswith("\\", start) and original[start + 1 : start + 2] in _ESCAPE_LETTERS:
            start += 2  # the JSON escape the leading boundary accepted is not part of the value
        candidate = original[start:end]
        before = original[max(0, start - CONTEXT_CHARS - 1) : start]
        # Validators judge context as text: an escape just before the value reads as the space it stands for.
        context = _TRAILING_ESCAPE.sub(" ", before) if "\\" in before else before
        after = original[end : end + CONTEXT_CHARS]
        # (Detector.accepted_length, inlined: this runs once per candidate.)
        if detector.refine is not None:
            length = detector.refine(candidate, context, after)
            if length == 0:
                return None
            candidate = candidate[:length]
        elif not detector.validate(candidate, context, after):
            return None
        prefix, secret, _ = detector.split(candidate) if detector.split is not None else ("", candidate, "")
        # Keep JSON escapes whole: a candidate that starts inside `\n` or `\u00e9`, or ends on a lone `\`.
        if "\\" in before or "\\" in prefix:
            lead = _escape_lead(before + prefix, secret)
            prefix, secret = prefix + secret[:lead], secret[lead:]
        if secret.endswith("\\") and _odd_backslashes(secret):
            secret = secret[:-1]
        if not secret:
            return None
        return start + len(prefix), secret


class Detection(NamedTuple):
    """One thing the redaction processor would redact: `value[start:end]` is an `entity` (stable interface)."""

    start: int
    end: int
    entity: str


class Explanation(NamedTuple):
    """A detection with the reason it was taken (`agentledger redact` prints these)."""

    start: int
    end: int
    entity: str
    reason: str


@cache
def _default_processor() -> RedactionProcessor:
    return RedactionProcessor(RedactionConfig())


def explain(values: Sequence[str], config: RedactionConfig | None = None) -> list[list[Explanation]]:
    """Like `detect`, with a few words per detection on why it was taken."""
    processor = _default_processor() if config is None else RedactionProcessor(config)
    scan = _Scan(processor.scanner)
    scan.spans = []
    scan.run(pa.array(list(values), pa.string()))
    found: list[list[Explanation]] = [[] for _ in values]
    for position, entity, start, end, reason in scan.spans:
        found[position].append(Explanation(start, end, entity, reason))
    return found


def detect(values: Sequence[str], config: RedactionConfig | None = None) -> list[list[Detection]]:
    """What the redaction processor would redact in each value: `(start, end, entity)` tuples, in the value's own
    character offsets, in order; `value[start:end]` is the part replaced. Stable public API; without a config the
    defaults apply (compiled once per process)."""
    return [[Detection(item.start, item.end, item.entity) for item in found] for found in explain(values, config)]


def _mark_group(
    values: pa.Array,
    group_pattern: str | None,
    group: Sequence[tuple[str, str]],
    may_match: npt.NDArray[np.bool_] | None = None,
) -> pa.Array:
    """Marks the candidates of a run of passes, on the values the run's alternation matches (all without one), or
    on the values `may_match` names (a superset of those, from Hyperscan)."""
    if may_match is not None:
        count = int(may_match.sum())
        if count == 0:
            return values
        # (Where most values may match, as in dense PII text, filtering them out and back costs more than it saves.)
        if count < len(values) * _RESTRICTED_SHARE:
            mask = pa.array(may_match)
            subset = values.filter(mask)
            for pattern, marker in group:
                subset = pc.replace_substring_regex(subset, pattern, f"{_OPEN}{marker}\\0{_CLOSE}")
            return pc.replace_with_mask(values, mask, subset)
    hits = pc.match_substring_regex(values, group_pattern) if group_pattern is not None else None
    count = len(values) if hits is None else pc.sum(hits).as_py() or 0
    if count == 0:
        return values
    subset = values if hits is None or count == len(values) else values.filter(hits)
    for pattern, marker in group:
        subset = pc.replace_substring_regex(subset, pattern, f"{_OPEN}{marker}\\0{_CLOSE}")
    if hits is None or count == len(values):
        return subset
    return pc.replace_with_mask(values, hits, subset)


def _mark_pass(
    values: pa.Array, pattern: str, marker: str, may_match: npt.NDArray[np.bool_], program: Any | None
) -> pa.Array:
    """Marks the candidates of one pass on the values `may_match` names (a superset of those it marks, from
    Hyperscan): through pyarrow, or on `program` (the same pattern, RE2 compiled once) value by value."""
    if program is None:
        return _mark_group(values, None, [(pattern, marker)], may_match)
    where = np.flatnonzero(may_match)
    if len(where) == 0:
        return values
    taken = pa.array(where)
    marked = [_marked(program, marker, text) if text is not None else None for text in values.take(taken).to_pylist()]
    mask = np.zeros(len(values), np.bool_)
    mask[where] = True
    return pc.replace_with_mask(values, pa.array(mask), pa.array(marked, pa.string()))


def _marked(program: Any, marker: str, text: str) -> str:
    """`text` with every match of `program` marked, as `program.sub` would mark them (leftmost-first, not
    overlapping), through the compiled RE2 object itself on the UTF-8 bytes: the binding's `sub` builds a Python
    match object per match and costs ~3x the search. RE2 matches whole code points, so byte offsets cut no character."""
    encoded = text.encode()
    regexp = program._regexp  # (google-re2 is pinned: its compiled RE2 object, the one `sub` itself calls)
    opening, closing = f"{_OPEN}{marker}".encode(), _CLOSE.encode()
    pieces: list[bytes] = []
    position = done = 0
    while True:
        start, end = regexp.Match(re2._Anchor.UNANCHORED, encoded, position, len(encoded))[0]
        if start < 0:
            break
        if end == start:  # an empty match: the binding's own rules for stepping past it
            return str(program.sub(lambda found: f"{_OPEN}{marker}{found.group(0)}{_CLOSE}", text))
        pieces += (encoded[done:start], opening, encoded[start:end], closing)
        position = done = end
    if not pieces:
        return text
    pieces.append(encoded[done:])
    return b"".join(pieces).decode()


# Counted repetitions with a large upper bound (`{0,80}`); two of them in one pattern multiply the states RE2's DFA
# needs to track past pyarrow's fixed memory, and RE2 then falls back to its NFA (the weak secret key-name pass:
# 51 ms for 150 kB of dense text, 18 ms on a program with 64 MB).
_LARGE_COUNT: Final = re.compile(r"(?<!\\)\{\d*,(\d{2,})\}")
_LARGE_COUNT_BOUND: Final = 64


def _outgrows_arrow_dfa(pattern: str) -> bool:
    return sum(1 for bound in _LARGE_COUNT.findall(pattern) if int(bound) >= _LARGE_COUNT_BOUND) >= 2


def _candidates(marked: str) -> list[tuple[int, int, int]]:
    """(start, end, detector index) of every marked candidate, in the unmarked text's offsets, outer before inner."""
    # In the order marks open: by start, and where two start together the outer one first, since an earlier pass
    # marked it (so also when both cover the same characters). Every mark is closed, after it opens: each pass
    # inserts both sentinels, the opening first.
    pieces = _MARK_TOKENS.split(marked)
    found: list[list[int]] = []
    open_marks: list[int] = []
    plain = len(pieces[0])
    for index in range(1, len(pieces), 2):
        token = pieces[index]
        if len(token) == 2:
            open_marks.append(len(found))
            found.append([plain, plain, ord(token[1]) - _FIRST_INDEX])
        elif open_marks:
            found[open_marks.pop()][1] = plain
        plain += len(pieces[index + 1])
    return [(start, end, detector) for start, end, detector in found]


def _escape_lead(before: str, secret: str) -> int:
    """How many characters of `secret` belong to a JSON escape that began just before it."""
    run = len(before) - len(before.rstrip("\\"))
    if run % 2 == 0:
        return 0
    if secret[:1] == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", secret[1:5]):
        return 5
    return 1


def _odd_backslashes(text: str) -> bool:
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def _still_json(original: str, redacted: str) -> bool:
    try:
        json.loads(redacted)
    except ValueError:
        try:
            json.loads(original)
        except ValueError:
            return True  # it was never JSON, so there is nothing to keep valid
        return False
    return True


@dataclass
class _Source:
    """Values of one place in the batch, with the batch row each value belongs to."""

    values: pa.Array
    rows: npt.NDArray[np.int64]


class RedactionProcessor:
    """Redacts every text a batch carries; writes `agentledger.redaction.summary` on the spans it changed."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config if config is not None else RedactionConfig()
        detectors = list(build_detectors(self.config.entities, self.config.phone_regions))
        detectors += [custom_detector(name, pattern) for name, pattern in self.config.custom_patterns.items()]
        self.detectors = tuple(detectors)
        rules = gitleaks_rules() if self.config.gitleaks_rules and "secret" in self.config.entities else None
        self.scanner = _Scanner(self.detectors, self.config, rules)
        ner_entities = tuple(entity for entity in self.config.entities if entity in NER_ENTITIES)
        self._ner: NerRedactor | None = (
            load_ner(ner_entities, self.config.ner_model, f"{KEY}.entities") if ner_entities else None
        )
        self._keep = _glob_matcher((*self.config.keep_keys, SUMMARY_KEY))
        self._mask = _glob_matcher(self.config.mask_keys)
        self._columns = self._plain_columns()

    def _plain_columns(self) -> dict[str, str]:
        """String columns to scan, each with what to do with it: `scan` or `mask`."""
        key_of_column = {column: key for key, column, _ in PROMOTED_COLUMNS}
        plan: dict[str, str] = {}
        for field in SPAN_SCHEMA:
            if field.type != pa.string() or field.name in _UNSCANNED_COLUMNS:
                continue
            key = key_of_column.get(field.name)
            if field.name not in _FREE_TEXT_COLUMNS and key is None:
                continue
            if key is not None and self._keep(key):
                continue
            plan[field.name] = "mask" if key is not None and self._mask(key) else "scan"
        return plan

    def process(self, batch: SpanBatch) -> SpanBatch:
        if batch.num_rows == 0:
            return batch
        batch = batch.combine_chunks()
        rows = batch.num_rows
        sources: list[_Source] = []
        masked_rows: list[npt.NDArray[np.int64]] = []
        rebuild: list[Callable[[pa.Array], None]] = []
        # After combine_chunks every column of a non-empty table is exactly one chunk.
        columns: dict[str, pa.Array] = {name: batch.column(name).chunk(0) for name in batch.column_names}
        every_row = np.arange(rows, dtype=np.int64)

        for name, action in self._columns.items():
            values = columns[name]
            if action == "mask":
                nonempty = pc.not_equal(values, "")
                masked_rows.append(every_row[nonempty.to_numpy(zero_copy_only=False)])
                columns[name] = pc.if_else(nonempty, BLOCKED_VALUE, values)
                continue
            sources.append(_Source(values, every_row))
            rebuild.append(_setter(columns, name))

        for name in _LIST_OF_STRING_COLUMNS:
            offsets = _offsets(columns[name])
            sources.append(
                _Source(columns[name].values[offsets[0] : offsets[-1]], np.repeat(every_row, np.diff(offsets)))
            )
            rebuild.append(_list_setter(columns, name, offsets))

        for name in (*_MAP_COLUMNS, *_LIST_OF_MAP_COLUMNS):
            outer: pa.ListArray | None = None
            if name in _MAP_COLUMNS:
                maps, map_rows = columns[name], every_row
            else:
                outer = columns[name]
                outer_offsets = _offsets(outer)
                maps = outer.values[outer_offsets[0] : outer_offsets[-1]]
                map_rows = np.repeat(every_row, np.diff(outer_offsets))
            entry_offsets = _offsets(maps)
            keys = maps.keys[entry_offsets[0] : entry_offsets[-1]]
            items = maps.items[entry_offsets[0] : entry_offsets[-1]]
            entry_rows = np.repeat(map_rows, np.diff(entry_offsets))
            keep, mask = self._key_masks(keys)
            if name == "attributes":
                # A summary the sender wrote itself must not pass for ours: it is removed, then ours is added.
                forged = pc.equal(keys, SUMMARY_KEY)
                if pc.any(forged).as_py():
                    kept = pc.invert(forged)
                    keys, items, entry_rows = keys.filter(kept), items.filter(kept), entry_rows[kept.to_numpy(False)]
                    keep, mask = keep.filter(kept), mask.filter(kept)
            mask_np = pc.and_(mask, pc.not_equal(items, "")).to_numpy(zero_copy_only=False)
            masked_rows.append(entry_rows[mask_np])
            items = pc.if_else(pa.array(mask_np), BLOCKED_VALUE, items)
            scan = pc.invert(pc.or_(keep, mask))
            scan_np = scan.to_numpy(zero_copy_only=False)
            sources.append(_Source(items.filter(scan), entry_rows[scan_np]))
            rebuild.append(_map_setter(columns, name, outer, entry_rows, map_rows, keys, items, scan, rows))

        flat = pa.concat_arrays([source.values for source in sources]) if sources else pa.array([], pa.string())
        flat_rows = np.concatenate([source.rows for source in sources]) if sources else every_row[:0]
        scan = _Scan(self.scanner)
        flat = scan.run(flat)
        found = dict(scan.found)
        if self._ner is not None:
            flat = self._ner.run(flat, found)
        start = 0
        for source, setter in zip(sources, rebuild, strict=True):
            setter(flat[start : start + len(source.values)])
            start += len(source.values)

        counts = {entity: np.bincount(flat_rows[positions], minlength=rows) for entity, positions in found.items()}
        blocked = np.concatenate(masked_rows) if masked_rows else every_row[:0]
        if len(blocked):
            counts[BLOCKED_KEY_ENTITY] = counts.get(BLOCKED_KEY_ENTITY, np.zeros(rows, np.int64)) + np.bincount(
                blocked, minlength=rows
            )
        columns["attributes"] = _with_summaries(columns["attributes"], counts, rows)
        return pa.Table.from_arrays([columns[name] for name in batch.column_names], schema=batch.schema)

    def _key_masks(self, keys: pa.Array) -> tuple[pa.Array, pa.Array]:
        unique = pc.unique(keys).to_pylist()
        kept = [key for key in unique if self._keep(key)]
        masked = [key for key in unique if key not in kept and self._mask(key)]
        keep = pc.is_in(keys, value_set=pa.array(kept, pa.string()))
        mask = pc.is_in(keys, value_set=pa.array(masked, pa.string()))
        return keep, mask

    def shutdown(self) -> None:
        return None


def _offsets(array: pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)


def _setter(columns: dict[str, pa.Array], name: str) -> Callable[[pa.Array], None]:
    def set_column(values: pa.Array) -> None:
        columns[name] = values

    return set_column


def _list_setter(columns: dict[str, pa.Array], name: str, offsets: npt.NDArray[np.int64]) -> Callable[[pa.Array], None]:
    def set_column(values: pa.Array) -> None:
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), values)

    return set_column


def _map_setter(
    columns: dict[str, pa.Array],
    name: str,
    outer: pa.ListArray | None,
    entry_rows: npt.NDArray[np.int64],
    map_rows: npt.NDArray[np.int64],
    keys: pa.Array,
    items: pa.Array,
    scanned: pa.Array,
    rows: int,
) -> Callable[[pa.Array], None]:
    def set_column(redacted: pa.Array) -> None:
        new_items = pc.replace_with_mask(items, scanned, redacted) if len(redacted) else items
        if outer is None:
            offsets = _row_offsets(entry_rows, rows)
            columns[name] = pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, new_items)
            return
        # Entries per map: entries were never removed from event and link maps, so the map sizes stand.
        maps_count = len(map_rows)
        entry_map = _entry_map_index(outer)
        map_offsets = _row_offsets(entry_map, maps_count)
        maps = pa.MapArray.from_arrays(pa.array(map_offsets, pa.int32()), keys, new_items)
        outer_offsets = _offsets(outer)
        columns[name] = pa.ListArray.from_arrays(pa.array(outer_offsets - outer_offsets[0], pa.int32()), maps)

    return set_column


def _entry_map_index(outer: pa.ListArray) -> npt.NDArray[np.int64]:
    outer_offsets = _offsets(outer)
    maps = outer.values[outer_offsets[0] : outer_offsets[-1]]
    return np.repeat(np.arange(len(maps), dtype=np.int64), np.diff(_offsets(maps)))


def _row_offsets(owner: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.int64]:
    sizes = np.bincount(owner, minlength=count) if len(owner) else np.zeros(count, np.int64)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _with_summaries(attributes: pa.Array, counts: Mapping[str, npt.NDArray[np.int64]], rows: int) -> pa.Array:
    """Appends `agentledger.redaction.summary` to the attributes of every span with at least one redaction."""
    if not counts:
        return attributes
    total = sum(counts.values())
    changed = np.flatnonzero(total)
    if len(changed) == 0:
        return attributes
    names = sorted(counts)
    # Entity names are lower-case identifiers (custom names are validated), so formatting is JSON already and
    # a third of the cost of json.dumps on every redacted span.
    columns = [(f'"{name}":', counts[name].tolist()) for name in names]
    summaries = [
        "{" + ",".join(f"{label}{values[row]}" for label, values in columns if values[row]) + "}"
        for row in changed.tolist()
    ]
    offsets = _offsets(attributes)
    keys = attributes.keys[offsets[0] : offsets[-1]]
    items = attributes.items[offsets[0] : offsets[-1]]
    owners = np.concatenate([np.repeat(np.arange(rows, dtype=np.int64), np.diff(offsets)), changed])
    order = np.argsort(owners, kind="stable")
    all_keys = pa.concat_arrays([keys, pa.array([SUMMARY_KEY] * len(changed), pa.string())]).take(pa.array(order))
    all_items = pa.concat_arrays([items, pa.array(summaries, pa.string())]).take(pa.array(order))
    return pa.MapArray.from_arrays(pa.array(_row_offsets(owners, rows), pa.int32()), all_keys, all_items)
