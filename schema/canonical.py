"""agentledger's one canonical serialisation: RFC 8785 JSON (JCS) with the `sha256:` content hash built on it
(schema/CONTEXT_HASH.md), the compact JSON of audit digests v1 and the length-prefixed fields of v2
(schema/AUDIT_CHAIN.md). The emitter, ingest and the evidence code all serialise through this module; it
imports nothing beyond the standard library, so the emitter can use it in an agent's process.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

# What JCS can canonicalise: the I-JSON data model (RFC 7493) as Python values.
JsonValue: TypeAlias = "bool | int | float | str | Sequence[JsonValue] | Mapping[str, JsonValue] | None"

HASH_PREFIX: Final = "sha256:"

# Integers beyond 2**53 cannot be represented exactly as the IEEE 754 doubles JCS serialises.
_MAX_SAFE_INTEGER: Final = 2**53

_SHORT_ESCAPES: Final = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}


class CanonicalJsonError(ValueError):
    """The value is outside the I-JSON data model (NaN, infinity, a huge integer, a lone surrogate, ...)."""


def canonicalize(value: JsonValue) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates have no UTF-8 form, so no canonical form
        raise CanonicalJsonError(f"string is not valid Unicode: {error.reason}") from error


def content_hash(value: JsonValue) -> str:
    """`sha256:` + lowercase hex SHA-256 of the canonical bytes: the context and arguments hash."""
    return HASH_PREFIX + hashlib.sha256(canonicalize(value)).hexdigest()


def sha256_text(data: bytes) -> str:
    """`sha256:` + lowercase hex SHA-256: how every hash in agentledger is written."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def compact_json(value: object) -> bytes:
    """JSON with no whitespace and no ASCII escaping (audit digests v1). For strings, integers, booleans
    and arrays this is JCS, except that integers beyond 2**53 are written exactly rather than refused (v1
    did so and its digests must keep recomputing). orjson writes the same bytes several times faster."""
    try:
        import orjson  # an optional speed-up: the emitter's process need not have it

        return orjson.dumps(value)
    except (ImportError, TypeError):  # TypeError: orjson.JSONEncodeError, integers beyond 64 bits
        pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# Length-prefixed fields (audit digests and links v2): every value is one field `<byte length>:<bytes>,`,
# netstring style, so no value can run into the next one and SQL can build the same bytes with concat().
def field(data: bytes) -> bytes:
    return b"%d:%b," % (len(data), data)


def text_field(text: str) -> bytes:
    return field(text.encode("utf-8"))


def int_field(number: int) -> bytes:
    """Integers, timestamps (nanoseconds) and booleans (1/0) are written in decimal."""
    return field(b"%d" % number)


def strings_field(values: Sequence[str]) -> bytes:
    """An array: its length as a field, then each element as a field."""
    return int_field(len(values)) + b"".join(text_field(value) for value in values)


def ints_field(values: Sequence[int]) -> bytes:
    return int_field(len(values)) + b"".join(int_field(value) for value in values)


def pairs_field(pairs: Sequence[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """A map: its number of pairs as a field, then key and value fields, pairs sorted by key then value
    (UTF-8 byte order, which is code point order)."""
    items = sorted(pairs.items() if isinstance(pairs, Mapping) else pairs)
    parts = [int_field(len(items))]
    for key, value in items:  # inline text_field: maps are the costliest part of a span digest
        key_bytes, value_bytes = key.encode("utf-8"), value.encode("utf-8")
        parts.append(b"%d:%b,%d:%b," % (len(key_bytes), key_bytes, len(value_bytes), value_bytes))
    return b"".join(parts)


def _write(value: JsonValue, parts: list[str]) -> None:
    # bool before int: bool is an int subclass in Python.
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            raise CanonicalJsonError(f"integer {value} is beyond 2**53 and has no exact IEEE 754 form")
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(serialize_number(value))
    elif isinstance(value, str):
        parts.append(_serialize_string(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise CanonicalJsonError(f"object keys must be strings, not {type(key).__name__}")
        parts.append("{")
        # Property order is by UTF-16 code units; big-endian UTF-16 bytes compare in exactly that order.
        for index, key in enumerate(sorted(keys, key=_utf16_sort_key)):
            if index:
                parts.append(",")
            parts.append(_serialize_string(key))
            parts.append(":")
            _write(value[key], parts)
        parts.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise CanonicalJsonError(f"{type(value).__name__} is not a JSON value")


def _utf16_sort_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _serialize_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        short = _SHORT_ESCAPES.get(code)
        if short is not None:
            out.append(short)
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def serialize_number(number: float) -> str:
    """ECMAScript Number.prototype.toString (ECMA-262 Number::toString) of a double, as JCS requires."""
    if math.isnan(number) or math.isinf(number):
        raise CanonicalJsonError(f"{number} is not a JSON number")
    if number == 0:
        return "0"  # -0 too
    sign = "-" if number < 0 else ""
    # repr() yields the shortest digit string that round-trips, which is what ECMAScript picks as well.
    digits, exponent = _shortest_digits(abs(number))
    k = len(digits)
    n = exponent + k  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exponent_text = ("+" if e >= 0 else "-") + str(abs(e))
    if k == 1:
        return sign + digits + "e" + exponent_text
    return sign + digits[0] + "." + digits[1:] + "e" + exponent_text


def _shortest_digits(number: float) -> tuple[str, int]:
    """(digits without leading/trailing zeros, exponent) with number == int(digits) * 10**exponent."""
    text = repr(number)
    mantissa, _, exponent_text = text.partition("e")
    exponent = int(exponent_text) if exponent_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    exponent -= len(fraction)
    stripped = digits.lstrip("0")
    trailing = len(stripped) - len(stripped.rstrip("0"))
    return stripped.rstrip("0"), exponent + trailing
