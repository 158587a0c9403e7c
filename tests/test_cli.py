"""The `agentledger` command's exit codes and sentences, run as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agentledger.ingest.migrations import bundled_migrations
from tests.conftest import RunningService, free_port

pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "agentledger", *args],
        capture_output=True, text=True, timeout=120, env={**base, **(env or {})}, cwd=cwd,
    )  # fmt: skip


def test_migrate_applies_then_reports_up_to_date_in_the_default_data_folder(tmp_path: Path) -> None:
    first = _cli("migrate", cwd=tmp_path)
    second = _cli("migrate", cwd=tmp_path)

    expected = ", ".join(f"{m.version:04d}_{m.name}" for m in bundled_migrations())
    assert (first.returncode, first.stdout) == (0, f"applied: {expected}\n")
    assert (second.returncode, second.stdout) == (0, "schema is up to date\n")
    assert (tmp_path / ".agentledger" / "clickhouse").is_dir()


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    result = _cli("migrate", env={"AGENTLEDGER_DATA_DIR": str(tmp_path / "elsewhere")}, cwd=tmp_path)

    assert result.returncode == 0
    assert (tmp_path / "elsewhere" / "clickhouse").is_dir()


def test_bad_port_in_the_environment_is_a_sentence_and_exit_2(tmp_path: Path) -> None:
    result = _cli("up", env={"AGENTLEDGER_API_PORT": "eighty"}, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == "agentledger up: --api-port must be a TCP port number, not 'eighty'\n"


def test_bad_dsn_is_refused(tmp_path: Path) -> None:
    result = _cli("migrate", "--dsn", "postgres://x", cwd=tmp_path)

    assert result.returncode == 2
    assert "must start with chdb://, http:// or https://" in result.stderr


def test_port_in_use_is_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("up", "--otlp-http-port", str(port), "--api-port", str(free_port()), cwd=tmp_path)

    assert result.returncode == 2
    assert f"cannot listen for the OTLP/HTTP collector on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_timeline_with_no_api_running_says_so(tmp_path: Path) -> None:
    result = _cli("timeline", "run_x", "--api-url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)

    assert result.returncode == 2
    assert "cannot reach the query API" in result.stderr
    assert "is `agentledger up` running?" in result.stderr


def test_demo_with_no_collector_running_says_so(tmp_path: Path) -> None:
    result = _cli("demo", "--collector-url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)

    assert result.returncode == 2
    assert "refused or did not answer; is `agentledger up` running?" in result.stderr


def test_migrate_while_up_owns_the_folder_explains_why(service: RunningService) -> None:
    result = _cli("migrate", "--data-dir", str(service.data_dir))

    assert result.returncode == 2
    assert "in use by another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_on_a_public_address_without_auth_is_refused(tmp_path: Path) -> None:
    result = _cli("up", "--host", "0.0.0.0", "--otlp-http-port", str(free_port()), "--api-port", str(free_port()),
                  cwd=tmp_path)  # fmt: skip

    assert result.returncode == 2
    assert "refusing to accept spans without authentication on 0.0.0.0:" in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    from agentledger.credentials import hash_token, load_credentials

    path = tmp_path / "credentials.yaml"
    result = _cli("credentials", "add", "--file", str(path), "--id", "bot", "--tenant", "acme", "--role", "agent",
                  "--agent-id", "bot-1")  # fmt: skip
    again = _cli("credentials", "add", "--file", str(path), "--id", "bot", "--tenant", "acme", "--role", "agent")

    token = result.stdout.strip()
    assert result.returncode == 0 and token.startswith("al_")
    assert token not in path.read_text()
    credential = load_credentials(path, roles=("agent",)).verify(token)
    assert credential is not None and (credential.tenant, credential.agent_id) == ("acme", "bot-1")
    assert credential.sha256 == hash_token(token)
    assert again.returncode == 2 and "a credential with id 'bot' exists already" in again.stderr
