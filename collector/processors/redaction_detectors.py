"""The redaction processor's detectors: RE2 candidate patterns and the Python validators that confirm them.

Patterns are written in the subset RE2 (pyarrow.compute) and Python `re` share: no lookarounds, no backrefs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# A validator sees the candidate and the text just around it (to reject versions, dates, parts of ids).
Validator = Callable[[str, str, str], bool]

_CONTEXT_CHARS: Final = 12


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

    @property
    def mark_patterns(self) -> tuple[str, ...]:
        return self.parts or (self.pattern,)


def _always(candidate: str, before: str, after: str) -> bool:
    return True


_NOT_DIGITS: Final = re.compile(r"[^0-9]")


def _digits(text: str) -> str:
    return _NOT_DIGITS.sub("", text)


# --- email -------------------------------------------------------------------------------------------------

EMAIL_PATTERN: Final = (
    r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)

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


# --- phone -------------------------------------------------------------------------------------------------

PHONE_PATTERN: Final = (
    # international: +CC then groups with common separators, e.g. +1 (415) 555-0199, +44 20 7946 0958
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,2}(?:[ .-]?\d{2,4}){1,4}\b"
    # North American national: (415) 555-0199, 415-555-0199, 415.555.0199
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}\b"
    r"|\b\d{3}[ .-]\d{3}[ .-]\d{4}\b"
    # French national: 01 23 45 67 89, 06.12.34.56.78
    r"|\b0[1-9](?:[ .]\d{2}){4}\b"
    # UK and German national with a trunk 0: 020 7946 0958, 07700 900123, 030 12345678, 0171-1234567
    r"|\b0\d{2,4}[ /-]\d{3,8}(?:[ -]\d{3,4})?\b"
)


_GROUP_BEFORE: Final = re.compile(r"[0-9A-Z]{2}\d{2} $|\d{4} $")
_GROUP_AFTER: Final = re.compile(r" \d{2,4}\b")


def _valid_phone(candidate: str, before: str, after: str) -> bool:
    digits = _digits(candidate)
    if candidate.startswith("+"):
        if not 8 <= len(digits) <= 15:
            return False
    elif not 9 <= len(digits) <= 12:
        return False
    if len(set(digits)) <= 2:  # 000-000-0000 and friends are placeholders
        return False
    # Part of a longer number (an id, a range such as 2024-2025, the groups of an account number) rather than
    # a number on its own.
    if _GROUP_BEFORE.search(before) or _GROUP_AFTER.match(after):
        return False
    return not (before[-1:].isalnum() or before.endswith(("-", "#")) or after.startswith(("-", "/")))


# --- payment cards -----------------------------------------------------------------------------------------

CARD_PATTERN: Final = (
    # 4-4-4-4(-3) or contiguous 13-19 digits; Amex 4-6-5; nothing shaped like a date or a UUID part
    # Issuer prefixes start with 2-6 (and 8 for UnionPay 81): epoch milliseconds and most ids never get marked.
    r"\b[2-68]\d{3}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,4}(?:[ -]?\d{3})?\b|\b3\d{3}[ -]?\d{6}[ -]?\d{4,5}\b"
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_brand_ok(digits: str) -> bool:
    # Issuer prefixes (IIN ranges) of the networks in use; most order numbers and epoch times fail here.
    length = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16
    if two in (34, 37):
        return length == 15
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649 or 622126 <= int(digits[:6]) <= 622925:
        return 16 <= length <= 19
    if 3528 <= four <= 3589:
        return 16 <= length <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= length <= 19
    if two == 62 or two == 81:
        return 16 <= length <= 19
    return False


_CARD_GROUPINGS: Final = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3)}


def _valid_card(candidate: str, before: str, after: str) -> bool:
    digits = _digits(candidate)
    if not 13 <= len(digits) <= 19 or not _card_brand_ok(digits) or not luhn_valid(digits):
        return False
    groups = tuple(len(group) for group in re.split(r"[ -]", candidate))
    if len(groups) > 1 and groups not in _CARD_GROUPINGS:
        return False  # a UUID's or a phone number's digit groups, not a card's
    return not before.endswith(("-", "#"))


# --- IBAN --------------------------------------------------------------------------------------------------

IBAN_PATTERN: Final = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"

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


_IBAN_LETTERS: Final = str.maketrans({chr(code): str(code - 55) for code in range(ord("A"), ord("Z") + 1)})


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_IBAN_LETTERS)) % 97 == 1


def _valid_iban(candidate: str, before: str, after: str) -> bool:
    return iban_valid(candidate.replace(" ", ""))


# --- US SSN ------------------------------------------------------------------------------------------------

SSN_PATTERN: Final = r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"


def _valid_ssn(candidate: str, before: str, after: str) -> bool:
    if candidate[3] != candidate[6]:
        return False  # 123-45 6789 mixes separators: not how an SSN is written
    area, group, serial = int(candidate[:3]), int(candidate[4:6]), int(candidate[7:])
    if area in (0, 666) or area >= 900 or group == 0 or serial == 0:
        return False
    return not (before[-1:].isalnum() or before.endswith(("-", "#")) or after.startswith("-"))


# --- IP addresses ------------------------------------------------------------------------------------------

_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEXTET: Final = r"[0-9A-Fa-f]{1,4}"
_EMBEDDED_V4: Final = r"(?:\.\d{1,3}\.\d{1,3}\.\d{1,3})?"
IP_PATTERN: Final = (
    rf"(?:{_HEXTET}:){{7}}{_HEXTET}"
    # Compressed forms need a hextet on one side of `::` that starts a word: `std::vector` is no candidate.
    rf"|\b{_HEXTET}(?::{_HEXTET}){{0,6}}::(?:{_HEXTET}(?::{_HEXTET}){{0,6}})?{_EMBEDDED_V4}"
    rf"|::{_HEXTET}(?::{_HEXTET}){{0,6}}{_EMBEDDED_V4}"
    rf"|\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
)

_VERSION_WORDS: Final = ("version", "ver", "v", "release", "build", "firmware", "fw", "rev", "python", "node")


def _valid_ip(candidate: str, before: str, after: str) -> bool:
    if before[-1:] in (":", ".") or before[-1:].isalnum() or after[:1] in (":",) or after[:1].isalnum():
        return False
    if after.startswith(".") and after[1:2].isdigit():
        return False  # 1.2.3.4.5 is a version or an OID, not an address
    if ":" in candidate:
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return False
        # `::` alone and `a::b`-style identifiers (C++ scopes, Rust paths) are not worth a mask.
        return not address.is_unspecified and sum(1 for part in candidate.split(":") if part) >= 2
    words = re.findall(r"[A-Za-z]+", before.lower())
    return not (words and words[-1] in _VERSION_WORDS and before.rstrip()[-1:] != ":")


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
    r"|://[^\s/:@\"'\x01-\x03]+:[^\s/@\"'\x01-\x03]+@",
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{12,}=*"
    r"|(?i:\bbasic\s+)[A-Za-z0-9+/]{12,}=*",
    r"(?i:passw(?:or)?d|passphrase|\bpwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token"
    # Quotes may come escaped (`\"api_key\": \"...\"`) when the assignment sits in JSON inside JSON text.
    r"|private[_-]?key|client[_-]?secret)(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?[^\s\"'\\,;&<>{}\[\]\x01-\x03]{3,}",
)
SECRET_PATTERN: Final = "|".join(f"(?:{part})" for part in SECRET_PATTERNS)
# What to keep around the secret: `password=`, `"api_key": "`, `Bearer `, and `://user:` ... `@`.
_URL_CREDENTIALS: Final = re.compile(r"(?s)(://[^:]*:)(.*)(@)$")
_SCHEME: Final = re.compile(r"(?si)((?:bearer|basic)\s+)(.*)()$")
_ASSIGNMENT: Final = re.compile(r"(?s)([^:=]*[:=]\s*(?:\\?[\"'])?)(.*)()$")
_ASSIGNMENT_KEY: Final = re.compile(r"(?i)^[\"']?[a-z_\-]*(?:passw|passphrase|pwd|secret|key|token)")


def split_secret(candidate: str) -> tuple[str, str, str]:
    """(prefix kept, secret, suffix kept) of a matched secret."""
    if candidate.startswith("://"):
        found = _URL_CREDENTIALS.match(candidate)
    elif candidate[:1] in "bB" and _SCHEME.match(candidate):
        found = _SCHEME.match(candidate)
    elif _ASSIGNMENT_KEY.match(candidate):
        found = _ASSIGNMENT.match(candidate)
    else:
        found = None
    if found is not None and found.group(2):
        return found.group(1), found.group(2), found.group(3)
    return "", candidate, ""


_LAYOUT: Final = re.compile(r"\\[nrt]|\s")


def _normal_secret(secret: str) -> str:
    # A PEM block keeps its pseudonym whether stored with newlines or inside JSON text with `\n` escapes.
    return _LAYOUT.sub("", secret)


def _valid_secret(candidate: str, before: str, after: str) -> bool:
    _, secret, _ = split_secret(candidate)
    # `password: [EMAIL]` or `secret=[REDACTED]`: already masked upstream, nothing to hide.
    return not (secret.startswith("[") or secret.lower() in ("none", "null", "true", "false", "***", "****"))


# Inside JSON text a value often follows an escape (`"line\n4111 1111 ..."`): the escape's letter glues to the
# value, so a leading word boundary alone would miss it. Every leading `\b` also accepts a preceding escape;
# the processor then moves the escape out of the candidate before validating it.
_LEADING_BOUNDARY: Final = re.compile(r"(^|\||\(|\(\?i:)\\b")


def json_aware(pattern: str) -> str:
    return _LEADING_BOUNDARY.sub(lambda found: found.group(1) + r"(?:\b|\\[nrtbf])", pattern)


def _detector(entity: str, pattern: str, validate: Validator, normalise: Callable[[str], str]) -> Detector:
    return Detector(entity, json_aware(pattern), validate, normalise)


BUILTIN_DETECTORS: Final[tuple[Detector, ...]] = (
    # Order is priority: where two candidates start at the same place, the earlier detector wins.
    Detector(
        "secret",
        json_aware(SECRET_PATTERN),
        _valid_secret,
        _normal_secret,
        tuple(json_aware(part) for part in SECRET_PATTERNS),
    ),
    _detector("email", EMAIL_PATTERN, _valid_email, str.lower),
    _detector("iban", IBAN_PATTERN, _valid_iban, lambda text: text.replace(" ", "").upper()),
    _detector("card", CARD_PATTERN, _valid_card, _digits),
    _detector("ssn", SSN_PATTERN, _valid_ssn, _digits),
    _detector("ip", IP_PATTERN, _valid_ip, _normal_ip),
    _detector("phone", PHONE_PATTERN, _valid_phone, _digits),
)
BUILTIN_ENTITIES: Final = tuple(detector.entity for detector in BUILTIN_DETECTORS)
# Entities only the optional NER plug-in (Presidio) finds.
NER_ENTITIES: Final = ("person", "address")


def custom_detector(entity: str, pattern: str) -> Detector:
    return Detector(entity, pattern, _always, lambda text: text)
