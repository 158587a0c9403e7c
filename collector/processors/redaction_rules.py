"""Secret detection from gitleaks' maintained rule set, taken in as data (`secret_rules/gitleaks.toml`, vendored
with its MIT licence and pinned commit): keywords pick the rules worth running, RE2 runs them.
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import re2

RULES_FILE: Final = Path(__file__).with_name("secret_rules") / "gitleaks.toml"
GITLEAKS_COMMIT: Final = "b58d3f102cf3a2c84cb7f923d05c25c9b1aed84b"
# Rules left out, with the reason:
# - generic-api-key: any `key = <10+ chars>`; the processor's own key-name context covers assignments with
#   fewer false positives on agent traces (`max_tokens = 4096`), and masks what follows the key only.
# - rules that need a file path (gitleaks scans repositories; a span has no path).
SKIPPED_RULES: Final = frozenset({"generic-api-key"})
_SHORT_KEYWORD: Final = 3


@dataclass(frozen=True)
class SecretRule:
    """One gitleaks rule: its RE2 program, the keywords that must occur for it to run, and its filters."""

    rule_id: str
    pattern: str
    regex: Any  # re2._Regexp: the binding ships no type information
    keywords: tuple[str, ...]
    secret_group: int
    entropy: float
    allow_regexes: tuple[Any, ...]
    stopwords: tuple[str, ...]


def shannon_entropy(text: str) -> float:
    # The same terms in the same order as `-sum(p * log2(p))` over a generator (bit for bit: thresholds compare it),
    # through `map`: a third of the cost of `find` on the dense corpus went to the generator.
    length = len(text)
    shares = [count / length for count in Counter(text).values()]
    return -float(sum(map(operator.mul, shares, map(math.log2, shares))))


class SecretRuleSet:
    """Finds secrets with the vendored rules; compiled once, shared by every processor and `detect` call."""

    def __init__(self, rules: Sequence[SecretRule], global_allow: Sequence[Any], global_stopwords: Sequence[str]):
        self.rules = tuple(rules)
        self._global_allow = tuple(global_allow)
        self._global_stopwords = tuple(global_stopwords)
        keywords = sorted({keyword for rule in self.rules for keyword in rule.keywords}, key=len, reverse=True)
        self._keywords = tuple(keywords)
        self._keyword_set = _keyword_set(self._keywords)
        self._by_keyword: dict[str, list[SecretRule]] = {}
        for rule in self.rules:
            for keyword in rule.keywords:
                self._by_keyword.setdefault(keyword, []).append(rule)
        # The columnar prefilter: a value is looked at only if some keyword occurs in it (gitleaks' own rule).
        # Keywords of one or two characters (`ey`, `sk`, `s.`) occur in most prose, so those rules' own
        # patterns take their place there.
        # Two patterns: RE2 runs a literal alternation 3x faster with its case-insensitive option than with an
        # inline (?i:...), and the option cannot apply to the rules' own patterns.
        long_keywords = [keyword for keyword in keywords if len(keyword) >= _SHORT_KEYWORD]
        short_rules = [rule for rule in self.rules if min(map(len, rule.keywords)) < _SHORT_KEYWORD]
        self.keyword_literals = "|".join(re.escape(keyword) for keyword in long_keywords)
        self.short_rule_patterns = tuple(rule.pattern for rule in short_rules)
        self.short_rule_pattern = "|".join(f"(?:{pattern})" for pattern in self.short_rule_patterns)
        self.keyword_pattern = f"(?i:{self.keyword_literals})|{self.short_rule_pattern}"
        # Per rule, its allowlist regexes and the global ones as one RE2 alternation (it matches where one of them
        # does): one search of a found secret instead of a dozen through the binding; and its stopwords with the
        # global ones, joined once.
        self._allow = {
            rule.rule_id: _compile(_alternation([r.pattern for r in (*rule.allow_regexes, *self._global_allow)]))
            for rule in self.rules
            if rule.allow_regexes or self._global_allow
        }
        self._has_groups = {rule.rule_id: rule.regex.groups >= 1 for rule in self.rules}
        self._stopwords = {rule.rule_id: (*rule.stopwords, *self._global_stopwords) for rule in self.rules}

    def _present_keywords(self, lowered: str) -> list[str]:
        # One pass of an RE2 set answers which keywords occur, overlapping ones too (~2 us for 500 characters,
        # where a substring test per keyword takes ~65 us); in the order of `_keywords`, as rules are run.
        present = self._keyword_set.Match(lowered)
        return [self._keywords[index] for index in sorted(present)] if present else []

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, rule id) of every secret in `text`, the secret itself (the rule's secret group)."""
        lowered = text.lower()
        # Lower-casing changes the length of a few characters (İ); then every rule runs, offsets stay right.
        present = self._present_keywords(lowered) if len(lowered) == len(text) else list(self._by_keyword)
        rules: dict[str, SecretRule] = {}
        for keyword in present:
            for rule in self._by_keyword.get(keyword, ()):
                rules[rule.rule_id] = rule
        found: list[tuple[int, int, str]] = []
        for rule in rules.values():
            # (Whether the rule has a group is the rule's, asked once, not once per match through the binding.)
            first_group = rule.secret_group == 0 and self._has_groups[rule.rule_id]
            for spans in match_spans(rule.regex, text):
                group = rule.secret_group
                if first_group and spans[1][1] > spans[1][0]:
                    group = 1  # gitleaks: the first group is the secret when the rule names none
                start, end = spans[group]
                if start < 0 or (end := _before_json_escape(text, start, end)) <= start:
                    continue
                if self._allowed(rule, text[start:end]):
                    continue
                found.append((start, end, rule.rule_id))
        return found

    def _allowed(self, rule: SecretRule, secret: str) -> bool:
        if rule.entropy and shannon_entropy(secret) < rule.entropy:
            return True
        lowered = secret.lower()
        if any(word in lowered for word in self._stopwords[rule.rule_id]):
            return True
        allow = self._allow.get(rule.rule_id)
        return allow is not None and found_in(allow, secret)


# An escaped newline, tab, carriage return or quote of JSON text, after an even run of backslashes (`\\n` is an
# escaped backslash then `n`). Rules whose classes admit backslashes (gitleaks' JWT rule, for `\/`) would
# otherwise run on over it into the next value: in plain text the same token ends at the newline itself.
_JSON_ESCAPE: Final = re.compile(r'(?<!\\)(?:\\\\)*\\[nrtbf"]')


def _before_json_escape(text: str, start: int, end: int) -> int:
    """Where a secret found at `start` ends: `end`, or the first JSON layout escape before it (one whose
    letter lies just past `end` too: a rule stopped by the `"` of `\\"` would keep the backslash and break
    the JSON document)."""
    if "\\" not in text[start:end]:
        return end
    found = _JSON_ESCAPE.search(text, start, min(len(text), end + 1))
    return min(end, found.end() - 2) if found is not None else end


def match_spans(regex: Any, text: str) -> Iterator[Sequence[tuple[int, int]]]:
    """The (start, end) of every group, the whole match first ((-1, -1) where a group took no part), of every match
    of `regex` in `text`, as `finditer` finds them. On ASCII text through the compiled RE2 object itself, whose byte
    offsets are then the text's: the binding's `finditer` builds a match object and maps offsets per match (most of
    the cost of a rule that matches often)."""
    if not text.isascii():
        for match in regex.finditer(text):
            yield [match.span(group) for group in range(regex.groups + 1)]
        return
    encoded = text.encode()
    regexp = regex._regexp  # (google-re2 is pinned: its compiled RE2 object, the one `finditer` itself calls)
    position, end = 0, len(encoded)
    while True:
        spans = regexp.Match(re2._Anchor.UNANCHORED, encoded, position, end)
        if spans[0][0] < 0:
            return
        yield spans
        if position == end:
            return
        # An empty match at `position` steps one character on, as the binding's own loop does.
        position = position + 1 if spans[0][1] == position else spans[0][1]


def found_in(regex: Any, text: str) -> bool:
    """Whether `regex` matches somewhere in `text` (the binding's public `search`)."""
    return regex.search(text) is not None


def _alternation(patterns: Sequence[str]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def _keyword_set(keywords: Sequence[str]) -> Any:
    """An RE2 set of the literal keywords: `Match(text)` gives the indices of every keyword occurring in text."""
    options = re2.Options()
    options.max_mem = 64 << 20
    keyword_set = re2.Set.SearchSet(options)
    for keyword in keywords:
        keyword_set.Add(re.escape(keyword))
    keyword_set.Compile()
    return keyword_set


def _compile(pattern: str) -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20  # some rules are large alternations; RE2's 8 MB default makes them slow
    return re2.compile(pattern, options)


@cache
def gitleaks_rules(path: Path = RULES_FILE) -> SecretRuleSet:
    """The vendored rule set, parsed and compiled once per process."""
    with path.open("rb") as handle:
        document = tomllib.load(handle)
    rules = []
    for raw in document["rules"]:
        if raw["id"] in SKIPPED_RULES or "regex" not in raw or "path" in raw or not raw.get("keywords"):
            continue
        allow_regexes: list[Any] = []
        stopwords: list[str] = []
        for allow in raw.get("allowlists", ()):
            if allow.get("paths") or allow.get("regexTarget", "secret") != "secret":
                continue  # path- and line-scoped allowlists do not apply to span values
            allow_regexes += [_compile(pattern) for pattern in allow.get("regexes", ())]
            stopwords += [word.lower() for word in allow.get("stopwords", ())]
        rules.append(
            SecretRule(
                rule_id=raw["id"],
                pattern=raw["regex"],
                regex=_compile(raw["regex"]),
                keywords=tuple(keyword.lower() for keyword in raw["keywords"]),
                secret_group=int(raw.get("secretGroup", 0)),
                entropy=float(raw.get("entropy", 0.0)),
                allow_regexes=tuple(allow_regexes),
                stopwords=tuple(stopwords),
            )
        )
    global_allow = document.get("allowlist", {})
    return SecretRuleSet(
        rules,
        [_compile(pattern) for pattern in global_allow.get("regexes", ())],
        [word.lower() for word in global_allow.get("stopwords", ())],
    )
