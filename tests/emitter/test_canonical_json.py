"""RFC 8785 (JCS) canonical JSON and the sha256 content hash, against the RFC's own examples."""

from __future__ import annotations

import hashlib
import struct

import pytest

from agentledger.schema.canonical import CanonicalJsonError, JsonValue, canonicalize, content_hash

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_numbers_match_rfc_8785_appendix_b(bits: str, expected: str) -> None:
    number = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonicalize([number]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(CanonicalJsonError):
        canonicalize(struct.unpack(">d", bytes.fromhex(bits))[0])


def test_rfc_8785_section_3_2_2_example() -> None:
    value: JsonValue = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(value) == expected.encode()
    # The RFC also gives the UTF-8 bytes in hex; its first and last bytes:
    assert canonicalize(value)[:6].hex() == "7b226c697465" and canonicalize(value)[-3:].hex() == "2f227d"


def test_rfc_8785_section_3_2_3_sorts_by_utf16_code_units() -> None:
    value: JsonValue = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    # A code-point sort would put the emoji (U+1F600) last; UTF-16 puts its surrogate D83D before FB33.
    assert canonicalize(value).decode() == expected


def test_control_characters_use_lower_case_unicode_escapes() -> None:
    assert canonicalize("\x00\x1f\x7f\u2028") == b'"\\u0000\\u001f\x7f\xe2\x80\xa8"'


def test_out_of_model_values_are_refused() -> None:
    with pytest.raises(CanonicalJsonError, match="beyond 2\\*\\*53"):
        canonicalize(2**53 + 1)
    with pytest.raises(CanonicalJsonError, match="not valid Unicode"):
        canonicalize("\ud800")
    with pytest.raises(CanonicalJsonError, match="keys must be strings"):
        canonicalize({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(CanonicalJsonError, match="bytes is not a JSON value"):
        canonicalize(b"x")


def test_content_hash_is_sha256_of_the_canonical_bytes() -> None:
    value: JsonValue = {"ticket": "SUP-4411", "amount": 240.0, "lines": ["Refund €240", 1e-7]}
    canonical = '{"amount":240,"lines":["Refund €240",1e-7],"ticket":"SUP-4411"}'
    assert content_hash(value) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    # The worked example of schema/CONTEXT_HASH.md.
    assert content_hash(value) == "sha256:7e363b1114f746ebb7bb836a994a1c9e58fb78578abf24df6b0283b48a4a85af"
