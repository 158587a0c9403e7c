"""The `agentledger` command's exit codes and sentences, run as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentledger.credentials import load_credentials
from agentledger.ingest.migrations import bundled_migrations
from agentledger.query_api.auth import ROLES
from tests.conftest import RunningService, free_port, start_service

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


def test_keys_create_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"

    first = _cli(
        "keys", "create", "--tenant", "acme", "--role", "responder", "--id", "oncall", "--file", str(keys_file)
    )
    second = _cli("keys", "create", "--tenant", "acme", "--role", "admin", "--id", "ops", "--file", str(keys_file))
    again = _cli("keys", "create", "--tenant", "acme", "--role", "admin", "--id", "ops", "--file", str(keys_file))

    token = first.stdout.strip()
    assert first.returncode == 0 and token.startswith("al_")
    assert token not in keys_file.read_text()
    store = load_credentials(keys_file, ROLES)
    credential = store.verify(token)
    assert credential is not None and (credential.id, credential.tenant, credential.role) == (
        "oncall",
        "acme",
        "responder",
    )
    assert store.verify(second.stdout.strip()) is not None
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    assert (again.returncode, again.stderr) == (
        2,
        f"agentledger keys: {keys_file}: a credential with id 'ops' exists already\n",
    )


def test_keys_create_needs_a_file(tmp_path: Path) -> None:
    result = _cli("keys", "create", "--tenant", "a", "--role", "admin", "--id", "x", cwd=tmp_path)

    assert (result.returncode, result.stderr) == (
        2, "agentledger keys: say which keys file to append to: --file or AGENTLEDGER_API_KEYS_FILE\n"
    )  # fmt: skip


def test_up_on_a_public_address_without_keys_is_refused(tmp_path: Path) -> None:
    # Collector auth is waived, so the query API's own check is the one that speaks.
    result = _cli("up", "--host", "0.0.0.0", "--allow-unauthenticated", "--api-port", str(free_port()), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == (
        "agentledger up: refusing to serve the query API on 0.0.0.0 without API keys, since anyone who can reach"
        " it could read every run; pass --api-keys-file (or AGENTLEDGER_API_KEYS_FILE), or bind 127.0.0.1\n"
    )


def test_up_with_an_unreadable_keys_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = _cli("up", "--api-keys-file", str(missing), "--api-port", str(free_port()), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith(f"agentledger up: cannot read credentials file {missing}")


def test_up_with_a_spool_it_cannot_open_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "spool").write_text("not a folder")  # as unusable as a read-only or failing disk

    result = _cli("up", "--data-dir", str(data_dir), "--otlp-http-port", str(free_port()), "--otlp-grpc-port",
                  str(free_port()), "--api-port", str(free_port()), cwd=tmp_path)  # fmt: skip

    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"agentledger up: cannot open the spool in {data_dir / 'spool'}: Not a directory",
    )  # fmt: skip


def test_import_writes_from_csv_and_parquet_through_a_keyed_service(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    admin = _cli("keys", "create", "--tenant", "acme", "--role", "admin", "--id", "ops", "--file", str(keys_file))
    token = admin.stdout.strip()
    (tmp_path / "writes.csv").write_text(
        "run_id,system,ref,action,target,occurred_at,tool_call_id\n"
        "run_1,jira,OPS-1,create,jira:project/OPS,2026-11-20T10:00:00.000000001Z,call_1\n"
        "run_2,jira,00042,update,jira:project/OPS,2026-11-20T10:00:01Z,\n"
    )
    pq.write_table(
        pa.table({
            "run_id": ["run_3"], "system": ["stripe"], "ref": ["re_9"], "action": ["transfer"], "target": ["c"],
            "occurred_at": pa.array([1_795_168_800_123_456_789], pa.timestamp("ns")),
        }),
        tmp_path / "writes.parquet",
    )  # fmt: skip
    (tmp_path / "bad.csv").write_text("run_id,system\nr,s\n")
    service = start_service(tmp_path / "data", "--api-keys-file", str(keys_file), "--tenant", "acme")
    try:
        env = {"AGENTLEDGER_API_URL": service.api_url, "AGENTLEDGER_API_KEY": token}
        csv_import = _cli("import-writes", str(tmp_path / "writes.csv"), env=env)
        parquet_import = _cli("import-writes", str(tmp_path / "writes.parquet"), env=env)
        bad = _cli("import-writes", str(tmp_path / "bad.csv"), env=env)
        unauthorised = _cli("import-writes", str(tmp_path / "writes.csv"), env={**env, "AGENTLEDGER_API_KEY": "x"})
        lookup = httpx.get(
            f"{service.api_url}/v1/writes", params={"ref": "re_9"}, headers={"Authorization": f"Bearer {token}"}
        )
        leading_zeros = httpx.get(
            f"{service.api_url}/v1/writes", params={"ref": "00042"}, headers={"Authorization": f"Bearer {token}"}
        )
        no_key = httpx.get(f"{service.api_url}/v1/runs")
    finally:
        service.stop()

    assert (csv_import.returncode, csv_import.stdout) == (0, f"imported 2 writes from {tmp_path / 'writes.csv'}\n")
    assert (parquet_import.returncode, parquet_import.stdout) == (
        0,
        f"imported 1 writes from {tmp_path / 'writes.parquet'}\n",
    )
    assert (bad.returncode, bad.stderr) == (
        2, f"agentledger import-writes: {tmp_path / 'bad.csv'} lacks the column(s) ref, action, target, occurred_at"
        " (needs run_id, system, ref, action, target, occurred_at)\n"
    )  # fmt: skip
    assert unauthorised.returncode == 1
    assert "were refused (401): the API key is not valid" in unauthorised.stderr
    assert lookup.json()["matches"][0]["write"]["occurred_at"] == "2026-11-20T10:00:00.123456789Z"
    assert leading_zeros.json()["matches"][0]["write"]["run_id"] == "run_2"
    assert no_key.status_code == 401
    assert "query API: 1 API key(s) from" in service.log()
