"""The redaction processor's detectors: RE2 candidate patterns and the Python validators that confirm them.

Patterns are written in the subset RE2 (pyarrow.compute) and Python `re` share: no lookarounds, no backrefs.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

import phonenumbers
from stdnum import luhn as stdnum_luhn
from stdnum.iso7064 import mod_97_10

# A validator sees the candidate and the text just around it (to reject versions, dates, parts of ids).
Validator = Callable[[str, str, str], bool]

# Characters of text either side of a candidate its validator sees; before it, one more when there is one, so
# that a validator can tell whether the first word of its window is whole.
CONTEXT_CHARS: Final = 24


@dataclass(frozen=True)
class SecondLook:
    """A Hyperscan prefilter pattern in two steps: `first`, fast over a whole column, then `exact`, a tighter necessary
    condition of the validator (a look-alike told by the word before it) too slow for one, on just the values that
    no other prefilter pattern passes."""

    first: str
    exact: str


@dataclass(frozen=True)
class Detector:
    """One entity type: its RE2 candidate pattern, a validator, and how its values are normalised
    before keyed hashing (so `Jane@X.com` and `jane@x.com` get the same pseudonym)."""

    entity: str
    pattern: str
    validate: Validator
    normalise: Callable[[str], str]
    # The pattern in the pieces RE2 marks one at a time (a big alternation exhausts RE2's DFA memory).
    parts: tuple[str, ...] = ()
    # (kept prefix, value, kept suffix) of a candidate that carries its context (`password=`, `ssn: `).
    split: Callable[[str], tuple[str, str, str]] | None = None
    # How much of the candidate is the entity (0: none of it), for candidates that may swallow a neighbour
    # (`DE89 ... 00 then`): used instead of `validate` when set.
    refine: Callable[[str, str, str], int] | None = None
    # Why the value was taken, in a few words (`agentledger redact` prints it).
    reason: str = ""
    # An RE2 pattern that every value holding an *accepted* candidate matches: a necessary condition of the
    # validator, tighter than `pattern`, so that values holding only look-alikes (timestamps, order ids, epoch
    # milliseconds) never leave the columnar prefilter for Python. None: `pattern` itself.
    prefilter: str | None = None
    # For the Hyperscan column scan alone, which judges ASCII text only: necessary conditions of the validator that
    # Hyperscan runs fast (a literal to start from), each alone or as a `SecondLook`. None: the prefilter patterns.
    hyperscan_prefilter: tuple[str | SecondLook, ...] | None = None

    @property
    def prefilter_patterns(self) -> tuple[str, ...]:
        return (self.prefilter,) if self.prefilter is not None else self.mark_patterns

    @property
    def mark_patterns(self) -> tuple[str, ...]:
        return self.parts or (self.pattern,)

    def accepted_length(self, candidate: str, before: str, after: str) -> int:
        if self.refine is not None:
            return self.refine(candidate, before, after)
        return len(candidate) if self.validate(candidate, before, after) else 0


def _always(candidate: str, before: str, after: str) -> bool:
    return True


_NOT_DIGITS: Final = re.compile(r"[^0-9]")


def _digits(text: str) -> str:
    return _NOT_DIGITS.sub("", text)


_WORD_CHARACTERS: Final = string.ascii_lowercase + string.digits + "_"


_Trie = dict[str, "_Trie"]


def words_except(words: Sequence[str], alphabet: str, min_length: int = 1) -> str:
    """A pattern, to use inside `(?i:...)`, of the runs of `alphabet` characters (lower-case letters, digits, `_`)
    at least `min_length` long that are none of `words` (lower case): the complement of a finite set is regular, so
    an automaton can reject a look-alike that a validator rejects by a word (a file extension for a TLD, a version
    word before a dotted quad). The caller bounds the run on both sides."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a word

    def other_than(node: _Trie, depth: int) -> str:
        branches = [re.escape(char) + other_than(child, depth + 1) for char, child in sorted(node.items()) if char]
        others = "".join(char for char in alphabet if char not in node)
        if others:
            branches.append(f"[{others}][{alphabet}]{{{max(0, min_length - depth - 1)},}}")
        if "" not in node and depth >= min_length:
            branches.append("")
        return "(?:" + "|".join(branches) + ")" if len(branches) > 1 else branches[0]

    return other_than(trie, 0)


# --- email -------------------------------------------------------------------------------------------------

# `%40` is `@` URL-encoded (query strings, form bodies), `%2B` a `+`; an encoded `=` or `&` (`%3D`) may come
# just before the address, and is split off again.
EMAIL_PATTERN: Final = (
    r"(?:%[0-9A-Fa-f]{2}|\b)[A-Za-z0-9](?:[A-Za-z0-9._+-]|%2[Bb])*(?:@|%40)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_ENCODED_LEAD: Final = re.compile(r"%[0-9A-Fa-f]{2}")


def split_email(candidate: str) -> tuple[str, str, str]:
    found = _ENCODED_LEAD.match(candidate)
    return (candidate[:3], candidate[3:], "") if found is not None else ("", candidate, "")


# Retina image names (`logo@2x.png`) and package pins look like addresses; a file extension is no TLD.
_FILE_EXTENSIONS: Final = frozenset(
    [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "ico",
        "bmp",
        "js",
        "mjs",
        "ts",
        "tsx",
        "jsx",
        "py",
        "rb",
        "go",
        "rs",
        "java",
        "css",
        "scss",
        "html",
        "htm",
        "json",
        "yaml",
        "yml",
        "txt",
        "md",
        "csv",
        "xml",
        "lock",
        "toml",
        "cfg",
        "ini",
        "log",
        "pdf",
        "zip",
        "gz",
        "tar",
        "whl",
    ]
)


def _valid_email(candidate: str, before: str, after: str) -> bool:
    top_level = candidate.rsplit(".", 1)[1].lower()
    return top_level not in _FILE_EXTENSIONS


# The Hyperscan prefilter of addresses: an `@` (or `%40`) between a character of the local part and a domain whose
# top-level label is no file extension, the validator's condition (`logo@2x.png` never leaves the column scan).
EMAIL_HYPERSCAN_PREFILTER: Final = (
    r"[A-Za-z0-9._+-](?:@|%40)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\."
    rf"(?i:{words_except(sorted(_FILE_EXTENSIONS), string.ascii_lowercase, 2)})\b"
)


def _normal_email(candidate: str) -> str:
    # `jane%40example.com` in a URL and `jane@example.com` in a body are one person: one pseudonym.
    return unquote(candidate).lower() if "%" in candidate else candidate.lower()


# --- phone -------------------------------------------------------------------------------------------------

# Candidates only: a run of digit groups with the separators people write (spaces, dots, dashes, slashes,
# parentheses around an area code, `+` or `00` before a country code), and an extension; libphonenumber then
# decides whether it is a number of one of the configured regions.
PHONE_PATTERN: Final = (
    # a parenthesised area code or trunk `(0)` may stand once, after a leading group or first
    # (seven characters at least: years, short ids and most counts are no candidates)
    r"(?:(?:\+|\b)\d[\d ./-]{0,6}(?:\(\d{1,5}\)[ .-]?)?[\d ./-]{4,20}\d|\(\d{1,5}\)[ .-]?\d[\d ./-]{3,16}\d)"
    r"(?:[ ,]{0,2}(?:ext\.?|Ext\.?|EXT\.?|extension|x|X|#) ?\d{1,6})?\b"
)
# Regions tried, in order, for numbers written without a country code (libphonenumber region codes).
DEFAULT_PHONE_REGIONS: Final = (
    "US", "GB", "DE", "FR", "IN", "AU", "JP", "BR", "ES", "IT", "NL", "MX", "CN", "KR", "RU", "PL", "SE",
    "CH", "BE", "AT", "IE", "PT", "ZA", "NG", "SG", "AR", "TR", "ID", "PH",
)  # fmt: skip

# Words before a number that make a short or unseparated digit run a phone number ...
_PHONE_WORD_LIST: Final = (
    "phone|tel|telephone|mobile|mob|cell|call|fax|whatsapp|sms|contact|dial|ring|hotline|"
    "telefon|téléphone|teléfono|telefone|telefono|numero|número|handy|celular|portable|tél"
)
_PHONE_WORDS: Final = re.compile(rf"(?i)(?:\b(?:{_PHONE_WORD_LIST})\b|\bphone_?number)")
# ... and words that make it something else.
_NOT_PHONE_WORD_LIST: Final = (
    "order|invoice|inv|sku|ref|reference|id|ticket|build|version|ver|tracking|account|acct|iban|card|"
    "ssn|zip|postcode|isbn|serial|batch|lot|po|receipt|txn|transaction|amount|total|port|pid|uid"
)
_NOT_PHONE_WORDS: Final = re.compile(rf"(?i)\b(?:{_NOT_PHONE_WORD_LIST})\b\W{{0,3}}$")
# The longest text that pattern can match (a word, three non-word characters, the newline `$` may stand before)
# and the character before it, which `\b` reads: searching that tail gives the answer searching it all would.
_NOT_PHONE_TAIL: Final = max(map(len, _NOT_PHONE_WORD_LIST.split("|"))) + 3 + 1 + 1
_DATE_LIKE: Final = re.compile(
    r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))(?:[ T]\d{1,2}(?:[:.]\d{2})*)?$"
)
_YEARS: Final = re.compile(r"^(?:19|20)\d\d(?: ?[-/] ?(?:19|20)?\d\d)?$")
_DOTTED: Final = re.compile(r"^\d{1,3}(?:\.\d{1,3}){2,}$")  # versions and IPv4 addresses
_SEPARATED: Final = re.compile(r"\d[ ./()-]+\d")
_SSN_SHAPE: Final = re.compile(r"^\d{3}([- ])\d{2}\1\d{4}$")
_EXTENSION: Final = re.compile(r"(?i)[ ,]{0,2}(?:ext\.?|extension|x|#) ?\d{1,6}$")
_IBAN_HEAD_BEFORE: Final = re.compile(r"\b[A-Z]{2}\d{2} $")  # the rest of a rejected IBAN: `DE89 3704 0044 ...`
_PART_BEFORE: Final = ("-", "#", "/", ".", ":", "_", "%", "$", "€", "£", "&")
_PART_AFTER: Final = ("-", "/", "_", "%")
_DIGIT_AFTER_PUNCT: Final = re.compile(r"[.:,]\d")


# The phone prefilter, derived from `phone_detector`'s validator (each branch is one way to pass it):
# - an international number: `+` and a digit, or `00` (not inside a digit run) and more than ten digits;
# - a phone word anywhere in the value (the validator looks for one just before the number);
# - otherwise nine digits at least, with a separator, after a character the validator accepts before a number
#   (not a letter, digit or one of `_PART_BEFORE`; a JSON escape reads as a space) and ending in a digit the
#   validator accepts after one (not a letter or one of `_PART_AFTER`; an extension's `x`, `ext`, `#` may follow).
# RE2's `\b` and classes are ASCII, so each branch accepts at least what Python's Unicode-aware checks accept.
_PHONE_INTERNATIONAL_OR_WORD: Final = (
    rf"\+\d|(?:^|\D)00[\d ./()-]{{8,}}\d|(?i:\b(?:{_PHONE_WORD_LIST})\b|\bphone_?number)"
)
# (`€` and `£` before a number are let through: a non-ASCII class makes the combined DFA twice as slow.)
_PHONE_CHARACTER_BEFORE: Final = r"[^A-Za-z0-9#/.:_%$&-]"
_PHONE_DIGIT_RUN: Final = (
    r"\(?(?:"
    # nine digits or more with a separator: the first group has `k` digits, the rest at least 9 - k
    + "|".join(rf"\d{{{k}}}[ ./()-]+\d(?:[ ./()-]*\d){{{8 - k},}}" for k in range(1, 9))
    + r"|\d{9,}[ ./()-]+\d(?:[ ./()-]*\d)*"
    r")(?:$|[^A-Za-z0-9_/%-]|[xXeE])"
)
_PHONE_SEPARATED: Final = rf"(?:^|{_PHONE_CHARACTER_BEFORE}|\\[nrtbf]){_PHONE_DIGIT_RUN}"
PHONE_PREFILTER: Final = f"{_PHONE_INTERNATIONAL_OR_WORD}|{_PHONE_SEPARATED}"
# The separated branch again, for Hyperscan's second look, after what `other_entity_before` accepts (in ASCII text):
# no word of `_NOT_PHONE_WORDS` (`invoice 1234-5678-90`) before the non-word characters that end the text before the
# number, unless there are more of them than its `\W{0,3}$` takes (four, or three and a final newline). A JSON
# escape just before the number passes whatever stands before it.
_W: Final = "[^A-Za-z0-9_]"
PHONE_SEPARATED_AFTER_CONTEXT: Final = (
    rf"(?:^{_W}{{0,3}}{_PHONE_CHARACTER_BEFORE}|^|\\[nrtbf]|{_W}{{4}}{_PHONE_CHARACTER_BEFORE}"
    rf"|{_W}{{3}}[^A-Za-z0-9#/.:_%$&\n-]"
    rf"|(?:^|{_W})(?i:{words_except(_NOT_PHONE_WORD_LIST.split('|'), _WORD_CHARACTERS)}){_W}{{0,3}}"
    rf"{_PHONE_CHARACTER_BEFORE})"
    rf"{_PHONE_DIGIT_RUN}"
)


@lru_cache(maxsize=65536)
def phone_region(candidate: str, regions: tuple[str, ...]) -> str | None:
    """The region (libphonenumber code) in which `candidate` is a valid number, or None."""
    try:
        if candidate.startswith(("+", "00")):
            # With its country code the shape is evidence enough: a possible length for that country
            # (libphonenumber's POSSIBLE leniency) also covers numbers in blocks not yet assigned.
            number = phonenumbers.parse(candidate, None if candidate.startswith("+") else "DE")  # DE dials out with 00
            if not phonenumbers.is_possible_number(number):
                return None
            return phonenumbers.region_code_for_country_code(number.country_code or 0)
        for region in regions:
            number = phonenumbers.parse(candidate, region)
            if phonenumbers.is_valid_number_for_region(number, region):
                return region
    except phonenumbers.NumberParseException:
        return None
    return None


@lru_cache(maxsize=65536)
def phone_shape(candidate: str) -> tuple[bool, str] | None:
    """What the phone checks say of `candidate` alone, whatever stands around it (numbers, look-alikes and their
    trimmed forms recur across values, and these checks cost ~10 regex calls): None when its shape rules it out
    (length, placeholder digits, a date, a year, a version, an SSN, an OID), else (whether it needs a phone word
    before it, the text libphonenumber is asked about)."""
    number = _without_extension(candidate)
    digits = _digits(number)
    if not 7 <= len(digits) <= 15 or len(set(digits)) <= 2:  # 000-000-0000 and friends are placeholders
        return None
    if _DATE_LIKE.match(number) or _YEARS.match(number) or _DOTTED.match(number) or _SSN_SHAPE.match(number):
        return None
    if "." in number and any(len(group) == 1 for group in number.split(".")[1:]):
        return None  # an OID or a version (1.3.6.1.4.1), not 06.12.34.56.78
    international = number.startswith("+") or (number.startswith("00") and len(digits) > 10)
    needs_keyword = not international and (len(digits) < 9 or _SEPARATED.search(number) is None)
    return needs_keyword, number.replace("(0)", "")


def _trimmed_forms(candidate: str) -> list[str]:
    """The candidate and the forms the phone detector tries after it, each without its last space-separated group
    (`415-555-0199 2 times` swallowed a neighbouring number): at most three forms, shortest last."""
    forms = [candidate]
    text = candidate
    while len(forms) < 3:
        cut = text.rfind(" ")
        if cut <= 0:
            break
        text = text[:cut].rstrip(" ,")
        forms.append(text)
    return forms


@lru_cache(maxsize=65536)
def _no_phone_shape(candidate: str) -> bool:
    """Whether `phone_shape` rules out every trimmed form of the candidate: then the phone detector's `refine` rejects
    it whatever stands around it (half the dense corpus's phone candidates: SSNs, dates, ISBNs, versions), without
    the context checks."""
    return all(phone_shape(text) is None for text in _trimmed_forms(candidate))


def _without_extension(candidate: str) -> str:
    # Every extension holds an `x` (no other character matches it case-insensitively) or a `#`: without one
    # there is nothing to strip, and the substitution's search is skipped.
    if "x" in candidate or "X" in candidate or "#" in candidate:
        return _EXTENSION.sub("", candidate)
    return candidate


class _Context:
    """What the text before a phone candidate says, each answer computed on first use and kept."""

    __slots__ = ("_before", "_keyword", "_other_entity", "_tests")

    def __init__(self, before: str, other_entity: Callable[[str], bool], keyword: Callable[[str], bool]) -> None:
        self._before = before
        self._tests = (other_entity, keyword)
        self._other_entity: bool | None = None
        self._keyword: bool | None = None

    def other_entity(self) -> bool:
        if self._other_entity is None:
            self._other_entity = self._tests[0](self._before)
        return self._other_entity

    def keyword(self) -> bool:
        if self._keyword is None:
            self._keyword = self._tests[1](self._before)
        return self._keyword


def phone_detector(regions: Sequence[str]) -> Detector:
    """The phone detector for `regions`: candidates from RE2, validity from libphonenumber's metadata."""
    regions = tuple(regions)

    def part_of_longer(before: str) -> bool:
        # Part of something longer: an id, a range, the groups of an account number, a decimal. Checked first:
        # the cheapest tests, and the ones most look-alikes (uuid groups, `ORD-2025-...`, timestamps) fail.
        return before[-1:].isalnum() or before.endswith(_PART_BEFORE)

    def other_entity_before(before: str) -> bool:
        # A word that makes the number something else (`order`, `iban`), or the head of an IBAN it continues.
        # (Digit groups just before are another entity's: the candidate pattern takes runs of groups whole.)
        tail = before[-_NOT_PHONE_TAIL:]
        return _NOT_PHONE_WORDS.search(tail) is not None or _IBAN_HEAD_BEFORE.search(before) is not None

    def has_keyword(before: str) -> bool:
        # In the window of CONTEXT_CHARS before the number, and whole: the extra character before the window
        # tells `ring` in `comparing` from a word of its own.
        return any(word.start() > 0 or len(before) <= CONTEXT_CHARS for word in _PHONE_WORDS.finditer(before))

    def number_valid(candidate: str, after: str, context: _Context) -> bool:
        # Every check but `part_of_longer`; those on the text before the number through `context`, which
        # answers each once for all the trimmed forms `refine` tries (they share that text).
        if after.startswith(_PART_AFTER) or after[:1].isalnum() or _DIGIT_AFTER_PUNCT.match(after):
            return False
        shape = phone_shape(candidate)
        if shape is None or context.other_entity():
            return False
        # Short local numbers and unseparated digit runs (epoch seconds, ids) need a phone word before them.
        needs_keyword, number = shape
        if needs_keyword and not context.keyword():
            return False
        return phone_region(number, regions) is not None

    def valid(candidate: str, before: str, after: str) -> bool:
        if part_of_longer(before):
            return False
        return number_valid(candidate, after, _Context(before, other_entity_before, has_keyword))

    def refine(candidate: str, before: str, after: str) -> int:
        # A candidate may have swallowed a neighbouring number (`415-555-0199 2 times`): drop trailing groups.
        if part_of_longer(before) or _no_phone_shape(candidate):
            return 0  # and so is every trimmed form: they share the text before, and their shapes are ruled out
        context = _Context(before, other_entity_before, has_keyword)
        text = next((t for t in _trimmed_forms(candidate) if number_valid(t, candidate[len(t) :] + after, context)), "")
        if not text:
            return 0
        # A card number or an SSN is the inner candidate's: no trimming it into a "phone number". Checked only
        # for candidates libphonenumber accepted (most are rejected earlier, and the Luhn check costs).
        if not candidate.startswith("+") and (_valid_card(candidate, before, after) or _SSN_SHAPE.match(candidate)):
            return 0
        return len(text)

    return Detector(
        "phone",
        json_aware(PHONE_PATTERN),
        valid,
        _digits,
        refine=refine,
        reason="valid phone number (libphonenumber)",
        prefilter=PHONE_PREFILTER,  # holds its own JSON escape
        hyperscan_prefilter=(_PHONE_INTERNATIONAL_OR_WORD, SecondLook(_PHONE_SEPARATED, PHONE_SEPARATED_AFTER_CONTEXT)),
    )


# --- payment cards -----------------------------------------------------------------------------------------

_CARD_GROUPED: Final = r"\b[1-9]\d{3}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?\b|\b3\d{3}[ -]?\d{6}[ -]?\d{4,5}\b"
CARD_PATTERN: Final = (
    # 12-19 digits, contiguous or in groups of four (the last shorter), or Amex/Diners 4-6-4(5); the issuer
    # ranges and Luhn are checked on the candidate.
    rf"\b(?:[1-9]\d{{11,18}}|0604\d{{8,15}})\b|{_CARD_GROUPED}"
)
# The card prefilter: `card_brand` gives numbers starting with 1 (UATP, JCB's 1800) 15 digits only, so the
# contiguous runs of epoch milliseconds (13 digits from 1) are no candidates.
CARD_PREFILTER: Final = rf"\b(?:1\d{{14}}|[2-9]\d{{11,18}}|0604\d{{8,15}})\b|{_CARD_GROUPED}"


def luhn_valid(digits: str) -> bool:
    # python-stdnum's check, as issue 17 asks (kept libraries, not hand-written validators): a written-out sum
    # was ~2.4 us faster per candidate (3.3 vs 0.9 us), ~3% of the dense corpus's time, not worth a second checker.
    return stdnum_luhn.is_valid(digits)


def card_brand(digits: str) -> str | None:
    """The card network whose issuer range (IIN) and lengths fit `digits`, or None."""
    length = len(digits)
    two, three, four, six = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return "Visa" if 13 <= length <= 19 else None
    if digits.startswith(("2131", "1800")):
        return "JCB" if length == 15 else None
    if 51 <= two <= 55 or 222100 <= six <= 272099:
        return "Mastercard" if length == 16 else None
    if two in (34, 37):
        return "American Express" if length == 15 else None
    if 2200 <= four <= 2204:
        return "Mir" if 16 <= length <= 19 else None
    if two == 35:  # JCB is 3528-3589; faker and some issuers' test ranges use all of 35
        return "JCB" if 16 <= length <= 19 else None
    if 300 <= three <= 305 or four == 3095 or two in (36, 38, 39):
        return "Diners Club" if 14 <= length <= 19 else None
    if four == 6011 or 644 <= three <= 649 or two == 65 or 622126 <= six <= 622925:
        return "Discover" if 16 <= length <= 19 else None
    if two in (62, 81):
        return "UnionPay" if 16 <= length <= 19 else None
    if two == 50 or 56 <= two <= 69 or four == 604:  # 0604: Maestro (UK)
        return "Maestro" if 12 <= length <= 19 else None
    if two == 82 or two == 60:
        return "RuPay" if length == 16 else None
    if four == 9792:
        return "Troy" if length == 16 else None
    if digits[0] == "1":
        return "UATP" if length == 15 else None
    return None


def _card_grouping_ok(groups: tuple[int, ...]) -> bool:
    if len(groups) == 1 or groups in ((4, 6, 4), (4, 6, 5)):
        return True
    # 4-4-4-4, 4-4-4-4-3, 4-4-4-1: groups of four, the last one shorter; not a UUID's or a phone's groups
    return len(groups) >= 3 and all(size == 4 for size in groups[:-1]) and 1 <= groups[-1] <= 4


def _valid_card(candidate: str, before: str, after: str) -> bool:
    digits = _digits(candidate)
    if not 12 <= len(digits) <= 19 or card_brand(digits) is None or not luhn_valid(digits):
        return False
    if not _card_grouping_ok(tuple(len(group) for group in re.split(r"[ -]", candidate))):
        return False
    return not before.endswith(("-", "#", ".", "_", "/", "+")) and not after.startswith(("-", "."))


# --- IBAN --------------------------------------------------------------------------------------------------

# Upper or lower case (`de89 3704 ...` is as valid to a bank as `DE89 3704 ...`).
IBAN_PATTERN: Final = r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b"

# ISO 13616 lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: Final[Mapping[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    compact = compact.upper()
    # Length for the country and ISO 7064 mod 97-10 (python-stdnum's, as its iban module uses it); not the national
    # BBAN formats, whose lookup costs ~1.5 ms a value, nor check digits, which invented and mistyped-but-real
    # account numbers fail while still identifying a person's account.
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact[2:4].isdigit():
        return False
    return mod_97_10_valid(compact[4:] + compact[:4])


def mod_97_10_valid(number: str) -> bool:
    """python-stdnum's ISO 7064 mod 97-10 check (False where stdnum refuses the characters)."""
    try:
        return mod_97_10.is_valid(number)
    except ValueError:
        return False


def _iban_length(candidate: str, before: str, after: str) -> int:
    """The IBAN at the start of `candidate`, which may have swallowed a following word (`... 00 then`)."""
    if before[-1:].isalnum():
        return 0
    text = candidate
    while len(text) >= 15:
        if iban_valid(text.replace(" ", "")):
            return len(text)
        cut = text.rfind(" ")
        if cut < 0:
            return 0
        text = text[:cut]
    return 0


# --- US SSN ------------------------------------------------------------------------------------------------

SSN_PATTERNS: Final = (
    r"\b\d{3}[- ]\d{2}[- ]\d{4}\b",
    # Nine bare digits are an SSN only after a keyword (`ssn=078051120`, `"ssn": "..."`).
    r"(?i:\bssn|\bsocial[ _-]?security(?:[ _-]?(?:number|no\.?|num))?|\bsoc[ .]?sec(?:[ .]?no\.?)?)"
    r"(?:\\?[\"'])?\s{0,3}[:=#]?\s{0,3}(?:\\?[\"'])?(?i:no\.?\s?)?\d{9}\b",
)
SSN_PATTERN: Final = "|".join(f"(?:{part})" for part in SSN_PATTERNS)
_SSN_KEYED: Final = re.compile(r"(?s)(.*?\D)(\d{9})()$")


def split_ssn(candidate: str) -> tuple[str, str, str]:
    if candidate[:1].isdigit():
        return "", candidate, ""
    found = _SSN_KEYED.match(candidate)
    return (found.group(1), found.group(2), "") if found is not None else ("", candidate, "")


def ssn_digits_valid(area: int, group: int, serial: int) -> bool:
    return not (area in (0, 666) or area >= 900 or group == 0 or serial == 0)


def _valid_ssn(candidate: str, before: str, after: str) -> bool:
    if after.startswith("-") or after[:1].isalnum():
        return False
    _, value, _ = split_ssn(candidate)
    if len(value) == 9:
        return value.isdigit() and ssn_digits_valid(int(value[:3]), int(value[3:5]), int(value[5:]))
    if value[3] != value[6]:
        return False  # 123-45 6789 mixes separators: not how an SSN is written
    if not ssn_digits_valid(int(value[:3]), int(value[4:6]), int(value[7:])):
        return False
    return not (before[-1:].isalnum() or before.endswith(("-", "#")))


# --- IP addresses ------------------------------------------------------------------------------------------

_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEXTET: Final = r"[0-9A-Fa-f]{1,4}"
_EMBEDDED_V4: Final = r"(?:\.\d{1,3}\.\d{1,3}\.\d{1,3})?"
# IPv6 (part 0) and IPv4 (part 1): they are marked at different times, around the phone digit runs.
IP_PATTERNS: Final = (
    rf"(?:{_HEXTET}:){{7}}{_HEXTET}"
    # Compressed forms need a hextet on one side of `::` that starts a word: `std::vector` is no candidate.
    rf"|\b{_HEXTET}(?::{_HEXTET}){{0,6}}::(?:{_HEXTET}(?::{_HEXTET}){{0,6}})?{_EMBEDDED_V4}"
    rf"|::{_HEXTET}(?::{_HEXTET}){{0,6}}{_EMBEDDED_V4}",
    rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b",
)
IP_PATTERN: Final = "|".join(f"(?:{part})" for part in IP_PATTERNS)

_VERSION_WORDS: Final = ("version", "ver", "v", "release", "build", "firmware", "fw", "rev", "python", "node")
_VERSION_BEFORE: Final = re.compile(rf"(?i)\b(?:{'|'.join(_VERSION_WORDS)})[ =]{{0,2}}$")
# A dotted quad after what `_valid_ip` accepts before an address (in ASCII text): the value's start, a JSON escape, a
# character that is no letter, digit or `.`; after a space or `=` (at most two: a third cannot follow a version
# word) only when the word before them is none of the version words (`version 1.2.3.4` is no address).
IPV4_AFTER_CONTEXT: Final = (
    r"(?:^|[^A-Za-z0-9. =]|\\[nrtbf]|[ =]{3}|(?:^|[^A-Za-z0-9_ =])[ =]{1,2}"
    rf"|(?:^|[^A-Za-z0-9_])(?i:{words_except(_VERSION_WORDS, _WORD_CHARACTERS)})[ =]{{1,2}})"
    rf"{_OCTET}(?:\.{_OCTET}){{3}}"
)


_HEXTET_BEFORE: Final = re.compile(r"(?:^|[^\w:])[0-9A-Fa-f]{1,4}:$|::$")
_PRODUCT_TOKEN: Final = re.compile(r"[A-Za-z][\w.-]*/$")  # `Chrome/`, `Version/`: a browser's version follows


def _valid_ip(candidate: str, before: str, after: str) -> bool:
    if before[-1:] == "." or before[-1:].isalnum() or after[:1].isalnum() or _PRODUCT_TOKEN.search(before):
        return False
    if after.startswith(".") and after[1:2].isdigit():
        return False  # 1.2.3.4.5 is a version or an OID, not an address
    if ":" not in candidate:
        # IPv4 then `:port` (a DSN's host) is an address; after a hex group and `:` it is part of an IPv6 one.
        if after.startswith(":") and not after[1:2].isdigit():
            return False
        if _HEXTET_BEFORE.search(before):
            return False
    elif before[-1:] == ":" or after.startswith(":"):
        return False
    if ":" in candidate:
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return False
        # `::` alone and `a::b`-style identifiers (C++ scopes, Rust paths) are not worth a mask.
        return not address.is_unspecified and sum(1 for part in candidate.split(":") if part) >= 2
    # `version 1.2.3.4`, `v 10.0.0.1`: a version word right before (`v532 | 10.0.0.1` is no version).
    return _VERSION_BEFORE.search(before) is None


def _normal_ip(candidate: str) -> str:
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return candidate


# --- secrets -----------------------------------------------------------------------------------------------

# Secrets that keep a readable prefix (the assignment's key, the `Bearer ` scheme) end in this group of
# the Python pattern `SECRET_PREFIX`; everything after the prefix is the secret.
SECRET_PATTERNS: Final = (
    # Patterns exclude the marking sentinels \x01-\x03 from their negated classes, so no match spans a mark.
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[^\x01-\x03]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s\\]*",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b"
    r"|\bgithub_pat_[A-Za-z0-9_]{22,}\b"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"
    r"|\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}"
    r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    # The password runs to the last `@` before the host: a password may itself end in `@`.
    r"|://[^\s/:@\"'\x01-\x03]+:[^\s/?#\"'\x01-\x03]+@",
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{12,}=*"
    r"|(?i:\bbasic\s+)[A-Za-z0-9+/]{12,}=*",
    # Key names that say "secret" (`aws_secret_access_key`, `DB_PASSWORD`, `x-api-key`): any value after them.
    r"(?i:passw(?:or)?d|passphrase|\bpwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token"
    # Quotes may come escaped (`\"api_key\": \"...\"`) when the assignment sits in JSON inside JSON text.
    r"|private[_-]?key|client[_-]?secret|credentials?|\bsecret[_-]?key)[\w.-]{0,30}(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?"
    r"[^\s\"'\\,;&<>{}\[\]\x01-\x03]{3,}",
    # Weaker key names (`HF_TOKEN`, `signing key`) only before a value that looks generated: 16+ characters with
    # digits, or hex; `max_tokens: 4096` and `primary_key = id` stay.
    r"(?i:token|\bkey|[_-]key|auth)s?(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?[A-Za-z0-9_+/.=-]{0,80}\d[A-Za-z0-9_+/.=-]{0,80}"
    r"|(?i:\bkey)\s*[:=]?\s*\b[0-9A-Fa-f]{16,}\b",
)
SECRET_PATTERN: Final = "|".join(f"(?:{part})" for part in SECRET_PATTERNS)
# What to keep around the secret: `password=`, `"api_key": "`, `Bearer `, and `://user:` ... `@`.
_URL_CREDENTIALS: Final = re.compile(r"(?s)(://[^:]*:)(.*)(@)$")
_SCHEME: Final = re.compile(r"(?si)((?:bearer|basic)\s+)(.*)()$")
_ASSIGNMENT: Final = re.compile(r"(?s)([^:=]*[:=]\s*(?:\\?[\"'])?)(.*)()$")
_ASSIGNMENT_KEY: Final = re.compile(r"(?i)^[\"']?[a-z_\-]*(?:passw|passphrase|pwd|secret|key|token|credential|auth)")
_BARE_KEY: Final = re.compile(r"(?si)(key\s*[:=]?\s*)([0-9a-f]{16,})()$")


def split_secret(candidate: str) -> tuple[str, str, str]:
    """(prefix kept, secret, suffix kept) of a matched secret."""
    if candidate.startswith("://"):
        found = _URL_CREDENTIALS.match(candidate)
    elif candidate[:1] in "bB" and _SCHEME.match(candidate):
        found = _SCHEME.match(candidate)
    elif _ASSIGNMENT_KEY.match(candidate):
        found = _ASSIGNMENT.match(candidate) or _BARE_KEY.match(candidate)
    else:
        found = None
    if found is not None and found.group(2):
        return found.group(1), found.group(2), found.group(3)
    return "", candidate, ""


_LAYOUT: Final = re.compile(r"\\[nrt]|\s")


def normal_secret(secret: str) -> str:
    # A PEM block keeps its pseudonym whether stored with newlines or inside JSON text with `\n` escapes.
    return _LAYOUT.sub("", secret)


def _valid_secret(candidate: str, before: str, after: str) -> bool:
    prefix, secret, _ = split_secret(candidate)
    # `password: [EMAIL]` or `secret=[REDACTED]`: already masked upstream, nothing to hide.
    if secret.startswith(("[", "<")) or secret.lower() in ("none", "null", "true", "false", "***", "****"):
        return False
    if prefix and _WEAK_KEY.search(prefix) and not _STRONG_KEY.search(prefix):
        # `token`/`key` alone: only a generated-looking value (`max_tokens=4096`, `key_id=12` stay).
        return len(secret) >= 16 and any(char.isdigit() for char in secret) and not secret.isdigit()
    return True


_WEAK_KEY: Final = re.compile(r"(?i)token|key|auth")
_STRONG_KEY: Final = re.compile(
    r"(?i)passw|passphrase|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|private[_-]?key"
    r"|credential"
)


# Inside JSON text a value often follows an escape (`"line\n4111 1111 ..."`): the escape's letter glues to the
# value, so a leading word boundary alone would miss it. Every leading `\b` also accepts a preceding escape;
# the processor then moves the escape out of the candidate before validating it.
_LEADING_BOUNDARY: Final = re.compile(r"(^|\||\(|\(\?i:)\\b")


def json_aware(pattern: str) -> str:
    return _LEADING_BOUNDARY.sub(lambda found: found.group(1) + r"(?:\b|\\[nrtbf])", pattern)


BUILTIN_DETECTORS: Final[tuple[Detector, ...]] = (
    # Order is priority: where two candidates start at the same place, the earlier detector wins.
    Detector(
        "secret",
        json_aware(SECRET_PATTERN),
        _valid_secret,
        normal_secret,
        tuple(json_aware(part) for part in SECRET_PATTERNS),
        split=split_secret,
        reason="known token format or a value after a secret's key name",
    ),
    Detector(
        "email",
        json_aware(EMAIL_PATTERN),
        _valid_email,
        _normal_email,
        split=split_email,
        reason="e-mail address",
        hyperscan_prefilter=(EMAIL_HYPERSCAN_PREFILTER,),
    ),
    Detector(
        "iban",
        json_aware(IBAN_PATTERN),
        _always,
        lambda text: text.replace(" ", "").upper(),
        refine=_iban_length,
        reason="IBAN with valid length and mod-97 check (python-stdnum)",
    ),
    Detector(
        "card",
        json_aware(CARD_PATTERN),
        _valid_card,
        _digits,
        reason="card number: issuer range and Luhn",
        prefilter=json_aware(CARD_PREFILTER),
    ),
    Detector(
        "ssn",
        json_aware(SSN_PATTERN),
        _valid_ssn,
        _digits,
        tuple(json_aware(part) for part in SSN_PATTERNS),
        split=split_ssn,
        reason="US SSN (valid area, group and serial)",
    ),
    Detector(
        "ip",
        json_aware(IP_PATTERN),
        _valid_ip,
        _normal_ip,
        tuple(json_aware(part) for part in IP_PATTERNS),
        reason="IP address",
        # The IPv4 part without its word boundaries (Hyperscan's `\b` before a digit costs it 7x), then after what
        # may stand before an address.
        hyperscan_prefilter=(
            json_aware(IP_PATTERNS[0]),
            SecondLook(rf"{_OCTET}(?:\.{_OCTET}){{3}}", IPV4_AFTER_CONTEXT),
        ),
    ),
    phone_detector(DEFAULT_PHONE_REGIONS),
)
BUILTIN_ENTITIES: Final = tuple(detector.entity for detector in BUILTIN_DETECTORS)
# Entities only the optional NER plug-in (Presidio) finds.
NER_ENTITIES: Final = ("person", "address")


def custom_detector(entity: str, pattern: str) -> Detector:
    return Detector(entity, pattern, _always, lambda text: text, reason="custom")


def build_detectors(entities: Sequence[str], phone_regions: Sequence[str]) -> tuple[Detector, ...]:
    """The built-in detectors for `entities`, in priority order, the phone one for `phone_regions`."""
    detectors = []
    for detector in BUILTIN_DETECTORS:
        if detector.entity not in entities:
            continue
        if detector.entity == "phone" and tuple(phone_regions) != DEFAULT_PHONE_REGIONS:
            detector = phone_detector(phone_regions)
        detectors.append(detector)
    return tuple(detectors)
