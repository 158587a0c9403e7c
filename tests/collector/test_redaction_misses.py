"""The miss classes of issue 17, one reproduction each: the whole entity masked, nothing of it left in clear,
and the look-alike decoys next to them left alone."""

from __future__ import annotations

import pytest

from agentledger.collector.processors.redaction import Detection, detect


def masked(text: str) -> list[tuple[str, str]]:
    """(entity, exact text) of every detection, in order."""
    (found,) = detect([text])
    return [(entity, text[start:end]) for start, end, entity in found]


# --- e-mail ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("GET /unsubscribe?email=jane.doe%40example.com&list=7", "jane.doe%40example.com"),
        (
            "redirect=https%3A%2F%2Fapp%2F%3Fto%3Dmaria%2Bsales%40corp.example.co.uk",
            "maria%2Bsales%40corp.example.co.uk",
        ),
        ("form body: name=Li&contact=li.chen%40Acme.IO", "li.chen%40Acme.IO"),
    ],
)
def test_url_encoded_emails_are_masked(text: str, address: str) -> None:
    assert masked(text) == [("email", address)]


# --- phone ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("call 1-415-555-0199 today", "1-415-555-0199"),
        ("US toll free 1-800-555-0142.", "1-800-555-0142"),
        ("tel. 06 12 34 56 78", "06 12 34 56 78"),
        ("Tel.: 0612345678", "0612345678"),
        ("Rufnummer (030) 1234567", "(030) 1234567"),
        ("Sydney office (02) 9374 4000", "(02) 9374 4000"),
        ("Tokyo 03-1234-5678", "03-1234-5678"),
        ("celular (11) 98765-4321", "(11) 98765-4321"),
        ("Moscow 8 (495) 123-45-67", "8 (495) 123-45-67"),
        ("mobile 98765 43210", "98765 43210"),
        ("Seoul 010-1234-5678", "010-1234-5678"),
        ("London +44 (0)20 7946 0958 ask for Tom", "+44 (0)20 7946 0958"),
        ("desk +1 415-555-0199 ext. 234 after 5", "+1 415-555-0199 ext. 234"),
        ("desk 415-555-0199 x234.", "415-555-0199 x234"),
        ("phone: 555-0199", "555-0199"),
        ("Beijing +86 138 0013 8000", "+86 138 0013 8000"),
        ("Madrid +34 912 34 56 78", "+34 912 34 56 78"),
        ("Milano 02 1234 5678", "02 1234 5678"),
    ],
)
def test_national_phone_formats_are_masked_whole(text: str, number: str) -> None:
    assert masked(text) == [("phone", number)]


# --- secrets --------------------------------------------------------------------------------------------------

HF = "hf_" + "QmWzXkTrPlVbNcHsJdGfYaUeIoRtMnBvCxZq"[:34]
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET),
        (f'{{"aws_secret_access_key": "{AWS_SECRET}", "region": "eu-west-1"}}', AWS_SECRET),
        (f"HF_TOKEN: {HF}", HF),
        (f"export HF_TOKEN={HF}", HF),
        ("sendgrid 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 ok", None),
        ("//registry.npmjs.org/:_authToken=npm_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", None),
        ("the key 3f9a1c2b8d7e6f5a4b3c2d1e0f9a8b7c is for staging", "3f9a1c2b8d7e6f5a4b3c2d1e0f9a8b7c"),
        ("signing key: 9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a", "9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a"),
        ("password=Summer2024@", "Summer2024@"),
        ("postgres://app:Pa55word@@db.internal:5432/app", "Pa55word@"),
        ("DB_PASSWORD: 'hunter2hunter2@'", "hunter2hunter2@"),
    ],
)
def test_secrets_after_key_names_and_vendor_prefixes_are_masked_whole(text: str, secret: str | None) -> None:
    found = masked(text)

    secrets = [value for entity, value in found if entity == "secret"]
    if secret is None:  # a vendor token: the whole token, whatever its exact extent, and nothing of it left
        assert len(secrets) == 1, found
        assert secrets[0].startswith(("SG.", "npm_")) and secrets[0] in text
    else:
        assert secret in secrets, found


def test_the_mask_leaves_no_character_of_a_password_ending_in_at() -> None:
    (found,) = detect(["postgres://app:Pa55word@@db.internal:5432/app"])
    ((_, end, _),) = [item for item in found if item[2] == "secret"]

    assert "postgres://app:Pa55word@@db.internal:5432/app"[end:] == "@db.internal:5432/app"


# --- SSN, IP, IBAN, card --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ssn"),
    [
        ("ssn=078051120", "078051120"),
        ('{"ssn": "219099999"}', "219099999"),
        ("SSN: 123456789 on file", "123456789"),
        ("social security number 536221234", "536221234"),
    ],
)
def test_nine_digit_ssns_next_to_a_keyword_are_masked(text: str, ssn: str) -> None:
    assert masked(text) == [("ssn", ssn)]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("postgres://app:[SECRET]@10.0.4.17:5432/orders", "10.0.4.17"),
        ("connect to 203.0.113.7:8443 failed", "203.0.113.7"),
        ("host:192.168.1.20 port:22", "192.168.1.20"),
        ("upstream [2001:db8::8a2e:370:7334]:443 refused", "2001:db8::8a2e:370:7334"),
    ],
)
def test_ip_addresses_with_a_port_are_masked(text: str, address: str) -> None:
    assert masked(text) == [("ip", address)]


@pytest.mark.parametrize(
    "text",
    [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Edg/119.0.2151.97 and Firefox/121.0.1.2",
        "uuid 550e8400-e29b-41d4-a716-446655440000 sha 3f9a1c2b8d7e6f5a4b3c2d1e0f9a8b7c1d2e3f4a",
        "released 2024-2025, build 1.2.3.4, order #12345678, SKU 123-45-678, at 10:22:31.123",
        "monkey 1234 5678, keyboard layout, primary_key = id, api version 2.1",
    ],
)
def test_decoys_stay_unmasked(text: str) -> None:
    assert masked(text) == []


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        ("iban de89370400440532013000 please", "de89370400440532013000"),
        ("pay to gb82 west 1234 5698 7654 32.", "gb82 west 1234 5698 7654 32"),
        ("IBAN: fr1420041010050500013m02606", "fr1420041010050500013m02606"),
    ],
)
def test_lower_case_ibans_are_masked(text: str, iban: str) -> None:
    assert masked(text) == [("iban", iban)]


@pytest.mark.parametrize(
    "number",
    [
        "4222222222222",  # Visa, 13 digits
        "4111111111111111110",  # Visa, 19 digits
        "6759649826438453",  # Maestro
        "501800000009",  # Maestro, 12 digits
        "36227206271667",  # Diners, 14
        "3530111333300000",  # JCB
        "6200000000000005",  # UnionPay
        "6250941006528599",  # UnionPay 16
        "6011000990139424",  # Discover
        "2200123456789019",  # Mir
        "5019717010103742",  # Dankort
        "378282246310005",  # Amex, 15
        "3056 9309 0259 04",  # Diners grouped 4-4-4-2
        "6304 0000 0000 0000 00",  # Maestro, 18 grouped
    ],
)
def test_cards_of_every_valid_length_and_range_are_masked(number: str) -> None:
    assert masked(f"card {number} charged") == [("card", number)]


def test_detect_returns_start_end_entity_named_tuples() -> None:
    (found,) = detect(["mail jane@example.com"])

    assert found == [(5, 21, "email")]
    assert found[0] == Detection(start=5, end=21, entity="email")
