"""The `agentledger` command: up, migrate, demo, timeline, import-writes, keys.

While `up` runs it owns the embedded data folder, so the other commands talk to it over HTTP.
Exit codes: 0 success, 1 the thing asked for was not found or failed, 2 bad input or unreachable service.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import httpx

from agentledger import __version__
from agentledger.collector.config import ConfigError
from agentledger.credentials import CredentialsError
from agentledger.demo import DemoError, send_demo
from agentledger.ingest.clickhouse import StorageUnavailable, connect
from agentledger.ingest.migrations import MigrationError, migrate
from agentledger.keys_file import append_key
from agentledger.query_api.auth import ROLES
from agentledger.settings import (
    DEFAULT_API_PORT,
    DEFAULT_JIRA_RUN_ID_FIELD,
    DEFAULT_OTLP_HTTP_PORT,
    ENV_API_KEY,
    ENV_API_KEYS_FILE,
    ENV_API_URL,
    ENV_COLLECTOR_URL,
    ENV_JIRA_RUN_ID_FIELD,
    Settings,
    load_settings,
)
from agentledger.write_import import ImportFileError, read_write_batches

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder for embedded data (env AGENTLEDGER_DATA_DIR; default ./.agentledger)",
    )
    parser.add_argument(
        "--dsn", help="ClickHouse DSN: chdb:///path or http://host:8123 (env AGENTLEDGER_CLICKHOUSE_DSN)"
    )
    parser.add_argument("--database", help="ClickHouse database (env AGENTLEDGER_DATABASE; default agentledger)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentledger", description="Observability and audit pipeline for AI agents.")
    parser.add_argument("--version", action="version", version=f"agentledger {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the OTLP collector and the query API (one process, one client)")
    _storage_flags(up)
    up.add_argument("--host", help="address to bind (env AGENTLEDGER_HOST; default 127.0.0.1)")
    up.add_argument(
        "--otlp-http-port",
        type=int,
        help=f"OTLP/HTTP port (env AGENTLEDGER_OTLP_HTTP_PORT; default {DEFAULT_OTLP_HTTP_PORT})",
    )
    up.add_argument(
        "--api-port", type=int, help=f"query API port (env AGENTLEDGER_API_PORT; default {DEFAULT_API_PORT})"
    )
    up.add_argument("--tenant", help="tenant stamped on received spans (env AGENTLEDGER_TENANT; default 'default')")
    up.add_argument(
        "--api-keys-file",
        type=Path,
        help=f"query API keys (YAML of hashes, see `keys create`; env {ENV_API_KEYS_FILE}); required off loopback",
    )
    up.add_argument(
        "--jira-run-id-field",
        help=f"Jira custom field holding the run id (env {ENV_JIRA_RUN_ID_FIELD}; default {DEFAULT_JIRA_RUN_ID_FIELD})",
    )
    up.add_argument("--demo", action="store_true", help="send demo agent runs once the servers are ready")

    migrate_cmd = commands.add_parser(
        "migrate", help="apply pending ClickHouse schema migrations (not while `up` owns the folder)"
    )
    _storage_flags(migrate_cmd)

    demo = commands.add_parser("demo", help="send demo agent runs to a running collector")
    demo.add_argument(
        "--collector-url", help=f"collector base URL (env {ENV_COLLECTOR_URL}; default http://127.0.0.1:4318)"
    )

    timeline = commands.add_parser("timeline", help="print the incident timeline of a run (through the query API)")
    timeline.add_argument("run_id", help="the agent.run.id")
    timeline.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")
    timeline.add_argument("--json", action="store_true", help="print the JSON the API returned")

    importer = commands.add_parser(
        "import-writes", help="bulk-import downstream writes from a Parquet or CSV file (through the query API)"
    )
    importer.add_argument("file", type=Path, help="a .parquet or .csv file with the POST /v1/writes columns")
    importer.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")

    keys = commands.add_parser("keys", help="manage query API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="create an API key: prints the token once, stores its hash")
    create.add_argument("--tenant", required=True, help="the tenant the key may read")
    create.add_argument("--role", required=True, choices=ROLES, help="responder (read), reviewer (+annotate), admin")
    create.add_argument("--id", required=True, dest="key_id", help="a name for the key (logs, annotations)")
    create.add_argument("--file", type=Path, help=f"keys file to append to (env {ENV_API_KEYS_FILE})")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags = {
        name: getattr(args, name, None)
        for name in (
            "data_dir",
            "dsn",
            "database",
            "host",
            "otlp_http_port",
            "api_port",
            "tenant",
            "api_keys_file",
            "jira_run_id_field",
        )
    }
    try:
        return load_settings(flags)
    except ConfigError as error:
        raise CliError(str(error)) from error


def _cmd_up(args: argparse.Namespace) -> int:
    from agentledger.service import ServiceError, run_service

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def after_start(started: Settings) -> None:
        try:
            for run in send_demo(started.collector_url):
                logging.getLogger("agentledger").info(
                    "demo run %s (%s): %s/v1/runs/%s/timeline",
                    run.run_id,
                    run.description,
                    started.api_url,
                    run.run_id,
                )
        except DemoError as error:
            logging.getLogger("agentledger").error("demo failed: %s", error)

    try:
        run_service(settings, after_start if args.demo else None)
    except (ServiceError, StorageUnavailable, MigrationError) as error:
        raise CliError(_storage_hint(str(error), settings)) from error
    return EXIT_OK


def _storage_hint(message: str, settings: Settings) -> str:
    # chDB lets one process own a data folder; a second one fails to start its EmbeddedServer.
    if "EmbeddedServer" in message:
        return (
            f"the data folder {settings.data_dir} is in use by another process; is `agentledger up` running?"
            " While it runs, other commands go through its API."
        )
    return message


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        client = connect(settings.clickhouse_dsn, settings.database)
        try:
            applied = migrate(client)
        finally:
            client.close()
    except (StorageUnavailable, MigrationError) as error:
        raise CliError(_storage_hint(str(error), settings)) from error
    if applied:
        print("applied: " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    else:
        print("schema is up to date")
    return EXIT_OK


def _env_url(explicit: str | None, env_name: str, default: str) -> str:
    return (explicit or os.environ.get(env_name) or default).rstrip("/")


def _cmd_demo(args: argparse.Namespace) -> int:
    url = _env_url(args.collector_url, ENV_COLLECTOR_URL, f"http://127.0.0.1:{DEFAULT_OTLP_HTTP_PORT}")
    try:
        runs = send_demo(url)
    except DemoError as error:
        raise CliError(str(error)) from error
    for run in runs:
        print(f"{run.run_id}\t{run.description}")
    return EXIT_OK


def _cmd_timeline(args: argparse.Namespace) -> int:
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        response = httpx.get(
            f"{api}/v1/runs/{quote(args.run_id, safe='')}/timeline", headers=_auth_headers(), timeout=30
        )
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the query API at {api} ({error}); is `agentledger up` running?") from error
    if response.status_code == 404:
        raise CliError(f"no run with id {args.run_id!r}", EXIT_FAILED)
    if response.status_code != 200:
        raise CliError(f"the query API answered {response.status_code}: {_detail(response)}", EXIT_FAILED)
    body = response.json()
    if args.json:
        print(json.dumps(body, indent=2))
        return EXIT_OK
    run = body["run"]
    print(
        f"run {run['run_id']}  agent {run['agent_name'] or run['agent_id']}  outcome {run['outcome'] or '-'}"
        f"  traces {len(run['trace_ids'])}  spans {len(body['entries'])}"
    )
    for entry in body["entries"]:
        details = "  ".join(f"{k}={v}" for k, v in entry["details"].items() if len(str(v)) <= 80)
        print(f"{entry['start_time']}  {entry['type']:<16} {entry['name']:<32} {entry['status']:<5} {details}")
    return EXIT_OK


def _auth_headers() -> dict[str, str]:
    key = os.environ.get(ENV_API_KEY, "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _cmd_import_writes(args: argparse.Namespace) -> int:
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        batches = read_write_batches(args.file)
        total = 0
        for first_row, batch in batches:
            try:
                response = httpx.post(f"{api}/v1/writes", json={"writes": batch}, headers=_auth_headers(), timeout=60)
            except httpx.HTTPError as error:
                raise CliError(
                    f"cannot reach the query API at {api} ({error}); is `agentledger up` running?"
                ) from error
            if response.status_code != 202:
                raise CliError(
                    f"rows {first_row + 1}-{first_row + len(batch)} were refused ({response.status_code}):"
                    f" {_detail(response)}; {total} writes were imported before them",
                    EXIT_FAILED,
                )
            total += int(response.json()["accepted"])
    except ImportFileError as error:
        raise CliError(str(error)) from error
    print(f"imported {total} writes from {args.file}")
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    path = args.file or (Path(os.environ[ENV_API_KEYS_FILE]) if os.environ.get(ENV_API_KEYS_FILE) else None)
    if path is None:
        raise CliError(f"say which keys file to append to: --file or {ENV_API_KEYS_FILE}")
    try:
        token = append_key(path, args.key_id, args.tenant, args.role)
    except CredentialsError as error:
        raise CliError(str(error)) from error
    print(token)
    print(
        f"API key {args.key_id!r} ({args.role}, tenant {args.tenant}) added to {path}; the token above is shown"
        " only now. Restart `agentledger up` to load it.",
        file=sys.stderr,
    )
    return EXIT_OK


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


_COMMANDS = {
    "up": _cmd_up,
    "migrate": _cmd_migrate,
    "demo": _cmd_demo,
    "timeline": _cmd_timeline,
    "import-writes": _cmd_import_writes,
    "keys": _cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except CliError as error:
        print(f"agentledger {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
