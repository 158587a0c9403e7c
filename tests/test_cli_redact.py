"""`agentledger redact FILE`: what the redaction processor would mask, line by line, with the reason; bad input
gives exit code 2 and one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def redact(*arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentledger", "redact", *arguments],
        input=stdin.decode() if stdin is not None else None, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_redact_prints_each_detection_with_its_place_and_reason(tmp_path: Path) -> None:
    values = tmp_path / "values.txt"
    values.write_text(
        "mail jane%40example.com now\nnothing here 2025-03-01\nHF_TOKEN: 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\n"
        "call 1-415-555-0199 ext. 234\n"
    )

    result = redact(str(values))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1:6-23  email   'jane%40example.com'  (e-mail address)",
        "3:11-47  secret  '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'  (gitleaks rule huggingface-access-token)",
        "4:6-28  phone   '1-415-555-0199 ext. 234'  (valid phone number (libphonenumber))",
        "3 values would be masked, in 3 of 4 lines",
    ]


def test_redact_applies_the_configs_redaction_settings(tmp_path: Path) -> None:
    config = tmp_path / "agentledger.yaml"
    config.write_text("processors:\n  redaction:\n    entities: [email]\n")

    result = redact("--config", str(config), "-", stdin=b"jane@example.com 203.0.113.7\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1:1-16  email   'jane@example.com'  (e-mail address)",
        "1 value would be masked, in 1 of 1 lines",
    ]


def test_bad_input_is_exit_code_2_with_a_sentence(tmp_path: Path) -> None:
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe")
    config = tmp_path / "agentledger.yaml"
    config.write_text("processors:\n  redaction:\n    phone_regions: [XX]\n")

    missing, not_text, bad_config = (
        redact(str(tmp_path / "missing.txt")),
        redact(str(binary)),
        redact("--config", str(config), str(binary)),
    )

    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"agentledger redact: cannot read {tmp_path / 'missing.txt'}: No such file or directory\n"
    assert (not_text.returncode, not_text.stderr) == (
        2,
        f"agentledger redact: {binary} is not UTF-8 text (byte 0 cannot be decoded)\n",
    )
    assert bad_config.returncode == 2
    assert "processors.redaction.phone_regions: XX is not a list of libphonenumber region codes" in bad_config.stderr
    assert "Traceback" not in missing.stderr + not_text.stderr + bad_config.stderr
