"""The redaction processor on columnar batches: detectors and validators, key rules, modes, the summary,
JSON kept valid, hard negatives and correlation ids untouched, and config errors at construction."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr, ValidationError

from agentledger.collector.components import PROCESSORS
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor, detect
from agentledger.schema import conventions as conv
from agentledger.schema.span_columns import SPAN_SCHEMA
from tests.collector.redaction_corpus import HardNegatives, generate_corpus
from tests.collector.span_batches import span_row as span

KEY = SecretStr("0123456789abcdef0123456789abcdef")
CONTEXT_HASH = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ARGUMENTS_HASH = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"


def redact(*rows: dict[str, Any], config: RedactionConfig | None = None) -> list[dict[str, Any]]:
    batch = pa.Table.from_pylist(list(rows), schema=SPAN_SCHEMA)
    result: list[dict[str, Any]] = RedactionProcessor(config).process(batch).to_pylist()
    return result


def test_every_structured_entity_is_masked_with_its_token() -> None:
    text = (
        "mail jane.doe@example.com, call +1 (415) 555-0199, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532"
        " 0130 00, SSN 078-05-1120, from 203.0.113.7 and 2001:db8::8a2e:370:7334, key AKIAIOSFODNN7EXAMPLE"
    )

    (row,) = redact(span(input_value=text))

    assert row["input_value"] == (
        "mail [EMAIL], call [PHONE], card [CARD], IBAN [IBAN], SSN [SSN], from [IP] and [IP], key [SECRET]"
    )
    summary = dict(row["attributes"])[conv.AGENTLEDGER_REDACTION_SUMMARY]
    assert json.loads(summary) == {"card": 1, "email": 1, "iban": 1, "ip": 2, "phone": 1, "secret": 1, "ssn": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghp_" + "a1" * 18, "[SECRET]"),
        ("glpat-abcdefghij0123456789", "[SECRET]"),
        ("xoxb-123456789012-123456789012-abcdefABCDEF", "[SECRET]"),
        ("sk-ant-api03-" + "x" * 40, "[SECRET]"),
        ("sk-proj-" + "Ab1" * 10, "[SECRET]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "[SECRET]"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----", "[SECRET]"),
        ("password=hunter2hunter2", "password=[SECRET]"),
        ('{"client_secret": "s3cr3tvalue"}', '{"client_secret": "[SECRET]"}'),
        ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer [SECRET]"),
        ("postgres://app:pa55word@db.internal:5432/app", "postgres://app:[SECRET]@db.internal:5432/app"),
    ],
)
def test_secrets_are_masked_keeping_the_readable_prefix(text: str, expected: str) -> None:
    (row,) = redact(span(status_message=text))

    assert row["status_message"] == expected


def test_hard_negatives_survive_unchanged() -> None:
    negatives = HardNegatives(random.Random(7))
    texts = [negatives.any() for _ in range(2000)] + [
        "550e8400-e29b-41d4-a716-446655440000",
        "4111 1111 1111 1112",  # fails Luhn
        "DE89 3704 0044 0532 0130 01",  # fails mod-97
        "000-12-3456",  # no SSN has area 000
        "released in version 1.2.3.4 on 2025-03-15 10:22:31",
        "see logo@2x.png",
        "std::vector and 10:22:31",
    ]

    assert [found for found in detect(texts) if found] == []


def test_labeled_corpus_is_found_completely() -> None:
    documents = generate_corpus(300, seed=11)

    found = detect([document.text for document in documents])

    for document, spans in zip(documents, found, strict=True):
        for label in document.labels:
            assert any(e == label.entity and s < label.end and label.start < t for s, t, e in spans), (
                label,
                document.text[label.start : label.end],
            )


def test_ids_and_hashes_are_never_touched() -> None:
    run_id = "run_jane.doe@example.com"  # even an id that looks like PII is the join key and stays
    (row,) = redact(
        span(
            run_id=run_id,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            context_hash=CONTEXT_HASH,
            arguments_hash=ARGUMENTS_HASH,
            attributes=[("gen_ai.tool.call.id", "call_4111111111111111"), ("custom.body_hash", "sha256:078-05-1120")],
        )
    )

    assert (row["run_id"], row["context_hash"], row["arguments_hash"]) == (run_id, CONTEXT_HASH, ARGUMENTS_HASH)
    assert row["attributes"] == [
        ("gen_ai.tool.call.id", "call_4111111111111111"),
        ("custom.body_hash", "sha256:078-05-1120"),
    ]


def test_blocked_keys_are_masked_whole_in_every_attribute_map() -> None:
    (row,) = redact(
        span(
            attributes=[("http.request.header.authorization", "Basic dXNlcjpwYXNz"), ("db.user", "app")],
            resource_attributes=[("service.db_password", "plain words")],
            event_attributes=[[("http.request.header.cookie", "session=abc")]],
            event_names=["login"],
            event_times=[1],
        )
    )

    assert row["attributes"][0] == ("http.request.header.authorization", "[REDACTED]")
    assert row["attributes"][1] == ("db.user", "app")
    assert row["resource_attributes"] == [("service.db_password", "[REDACTED]")]
    assert row["event_attributes"] == [[("http.request.header.cookie", "[REDACTED]")]]
    assert json.loads(dict(row["attributes"])[conv.AGENTLEDGER_REDACTION_SUMMARY]) == {"blocked_key": 3}


def test_json_values_stay_valid_json() -> None:
    arguments = json.dumps(
        {"to": ["a@example.com", "b@example.org"], "note": "line\nc@example.net\tcall 415-555-0199", "n": 3}
    )

    (row,) = redact(span(tool_arguments=arguments, attributes=[("app.recipients", '["d@example.com"]')]))

    assert json.loads(row["tool_arguments"]) == {
        "to": ["[EMAIL]", "[EMAIL]"],
        "note": "line\n[EMAIL]\tcall [PHONE]",
        "n": 3,
    }
    assert json.loads(dict(row["attributes"])["app.recipients"]) == ["[EMAIL]"]


def test_pseudonyms_are_keyed_equal_for_equal_values_and_normalised() -> None:
    config = RedactionConfig(default_mode="pseudonym", hmac_key=KEY)
    rows = redact(
        span(name="mail Jane.Doe@Example.com", input_value="again jane.doe@example.com, not john@example.com"),
        span(name="call +1 415-555-0199", input_value="call +1 (415) 555 0199"),
        config=config,
    )
    other_key = redact(
        span(name="mail jane.doe@example.com"),
        config=RedactionConfig(default_mode="pseudonym", hmac_key=SecretStr("x" * 40)),
    )

    first = rows[0]["name"].removeprefix("mail ")
    assert first.startswith("<email:") and len(first) == len("<email:3f9a1c2b4d5e>")
    assert rows[0]["input_value"].startswith(f"again {first}, not <email:")
    assert not rows[0]["input_value"].endswith(f"{first}")
    assert rows[1]["name"].removeprefix("call ") == rows[1]["input_value"].removeprefix("call ")
    assert other_key[0]["name"] != rows[0]["name"]


def test_drop_mode_removes_the_value_and_modes_are_per_entity() -> None:
    config = RedactionConfig(modes={"email": "drop"})

    (row,) = redact(span(input_value="mail <jane@example.com> ip 203.0.113.7"), config=config)

    assert row["input_value"] == "mail <> ip [IP]"


def test_custom_patterns_are_detected_with_their_own_token() -> None:
    config = RedactionConfig(custom_patterns={"employee_id": r"\bEMP-\d{6}\b"})

    (row,) = redact(span(input_value="by EMP-004211 for SUP-4411"), config=config)

    assert row["input_value"] == "by [EMPLOYEE_ID] for SUP-4411"
    assert json.loads(dict(row["attributes"])[conv.AGENTLEDGER_REDACTION_SUMMARY]) == {"employee_id": 1}


def test_a_forged_summary_is_replaced_and_clean_spans_get_none() -> None:
    rows = redact(
        span(attributes=[(conv.AGENTLEDGER_REDACTION_SUMMARY, '{"email":0}'), ("a", "jane@example.com")]),
        span(name="clean", attributes=[(conv.AGENTLEDGER_REDACTION_SUMMARY, "{}")]),
    )

    assert rows[0]["attributes"] == [("a", "[EMAIL]"), (conv.AGENTLEDGER_REDACTION_SUMMARY, '{"email":1}')]
    assert rows[1]["attributes"] == []


def test_event_names_and_link_attributes_are_redacted() -> None:
    (row,) = redact(
        span(
            event_names=["sent to jane@example.com", "ok"],
            event_times=[1, 2],
            event_attributes=[[], [("note", "203.0.113.9")]],
            link_trace_ids=["4bf92f3577b34da6a3ce929d0e0e4736"],
            link_span_ids=["00f067aa0ba902b7"],
            link_attributes=[[("from", "ssn 078-05-1120")]],
        )
    )

    assert row["event_names"] == ["sent to [EMAIL]", "ok"]
    assert row["event_attributes"] == [[], [("note", "[IP]")]]
    assert row["link_attributes"] == [[("from", "ssn [SSN]")]]


def test_the_registry_builds_redaction_with_safe_defaults() -> None:
    processor = PROCESSORS["redaction"].create(RedactionConfig(), None)  # type: ignore[arg-type]  # needs no context

    assert isinstance(processor, RedactionProcessor)
    assert processor.config.default_mode == "mask"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"custom_patterns": {"ticket": "SUP-(\\d+"}}, "processors.redaction.custom_patterns.ticket is not a valid"),
        (
            {"custom_patterns": {"ticket": "(?<=SUP-)\\d+"}},
            "processors.redaction.custom_patterns.ticket is not a valid",
        ),
        ({"custom_patterns": {"email": "x+"}}, "must not be a built-in entity"),
        ({"custom_patterns": {"ticket": "x*"}}, "processors.redaction.custom_patterns.ticket matches the empty string"),
        ({"entities": ["email", "passport"]}, "processors.redaction.entities: unknown entity 'passport'"),
        ({"modes": {"passport": "mask"}}, "processors.redaction.modes: unknown entity 'passport'"),
        ({"default_mode": "pseudonym"}, "processors.redaction.hmac_key is required"),
        ({"hmac_key": "short-key"}, "processors.redaction.hmac_key must be at least 32 characters long"),
        ({"modes": {"email": "encrypt"}}, "modes.email"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_config_errors_fail_at_construction_with_a_sentence_naming_the_key(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        RedactionConfig.model_validate(settings)


def test_ner_without_presidio_or_a_model_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "presidio_analyzer" else real_find_spec(name, *a)
    )
    with pytest.raises(
        ValidationError, match=r"processors.redaction.entities asks for person, which needs the optional"
    ):
        RedactionConfig(entities=("email", "person"))


def test_ner_runs_through_presidio_when_the_extra_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("presidio_analyzer")
    spacy = pytest.importorskip("spacy")
    # A blank pipeline: no NER model ships on PyPI, so this proves the wiring, not the recognition.
    spacy.blank("en").to_disk(tmp_path / "blank")
    config = RedactionConfig(entities=("email", "person", "address"), ner_model=str(tmp_path / "blank"))

    (row,) = redact(span(input_value="Maria Lopez wrote from maria@example.com"), config=config)

    assert row["input_value"] == "Maria Lopez wrote from [EMAIL]"


def test_ner_with_a_missing_spacy_model_is_a_config_error() -> None:
    pytest.importorskip("presidio_analyzer")

    with pytest.raises(ValidationError, match=r"the spaCy model 'no_such_model' \(processors.redaction.ner_model\)"):
        RedactionConfig(entities=("person",), ner_model="no_such_model")


def test_repeated_values_in_one_batch_are_redacted_and_counted_on_every_span() -> None:
    # Above the small-input size, so the columnar path runs, which validates each distinct value once.
    texts = ["call +1 (415) 555-0199 or mail jane@example.com", "nothing here", "card 4111 1111 1111 1111"] * 120
    rows = redact(*(span(input_value=text, attributes=[("note", text)]) for text in texts))

    expected = {
        texts[0]: ("call [PHONE] or mail [EMAIL]", '{"email":2,"phone":2}'),
        texts[1]: ("nothing here", None),
        texts[2]: ("card [CARD]", '{"card":2}'),
    }
    for text, row in zip(texts, rows, strict=True):
        redacted, summary = expected[text]
        assert row["input_value"] == redacted
        assert row["attributes"] == [("note", redacted)] + (
            [(conv.AGENTLEDGER_REDACTION_SUMMARY, summary)] if summary else []
        )
    assert detect(texts) == [detect([text])[0] for text in texts]
    assert detect(texts)[0] == [(5, 22, "phone"), (31, 47, "email")]
