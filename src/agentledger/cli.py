"""The `agentledger` command: up, collector, api, migrate, demo, timeline, verify, export, keygen, keys, credentials,
  import-writes, phoenix-sync, gate, deadletter.

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
from typing import Any, Final

import httpx

from agentledger import __version__
from agentledger.collector.config import ConfigError
from agentledger.credentials import CredentialsError, add_credential
from agentledger.demo import DemoError, send_demo
from agentledger.gate import GateBudgets, GateError, fetch_comparison, judge, load_budgets, open_api
from agentledger.ingest.clickhouse import StorageUnavailable, connect
from agentledger.ingest.migrations import MigrationError, migrate
from agentledger.query_api.auth import ROLES
from agentledger.schema.run_ids import evidence_file_name, run_id_path_segment, run_page_url
from agentledger.settings import (
    DEFAULT_API_PORT,
    DEFAULT_JIRA_RUN_ID_FIELD,
    DEFAULT_OTLP_GRPC_PORT,
    DEFAULT_OTLP_HTTP_PORT,
    ENV_API_KEY,
    ENV_API_KEYS_FILE,
    ENV_API_URL,
    ENV_CLICKHOUSE_CLUSTER,
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
    parser.add_argument("--config", type=Path, help="YAML config file (env AGENTLEDGER_CONFIG)")
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
        "--otlp-grpc-port",
        type=int,
        help=f"OTLP/gRPC port (env AGENTLEDGER_OTLP_GRPC_PORT; default {DEFAULT_OTLP_GRPC_PORT})",
    )
    up.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="accept spans without tokens on a non-loopback address (env AGENTLEDGER_ALLOW_UNAUTHENTICATED=1)",
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
    up.add_argument(
        "--phoenix",
        action="store_true",
        help="also start a local Arize Phoenix (the `phoenix` command) and export to it, for review",
    )
    up.add_argument("--phoenix-port", type=int, default=6006, help="port of the local Phoenix (default 6006)")

    migrate_cmd = commands.add_parser(
        "migrate", help="apply pending ClickHouse schema migrations (not while `up` owns the folder)"
    )
    _storage_flags(migrate_cmd)
    _cluster_flag(migrate_cmd)
    migrate_cmd.add_argument(
        "--print", action="store_true", help="print the DDL for the shape (one node or --cluster) without applying it"
    )
    _role_parsers(commands)

    demo = commands.add_parser("demo", help="send demo agent runs to a running collector")
    demo.add_argument(
        "--collector-url", help=f"collector base URL (env {ENV_COLLECTOR_URL}; default http://127.0.0.1:4318)"
    )
    demo.add_argument(
        "--api-url",
        help=f"query API base URL for the downstream writes (env {ENV_API_URL}; default http://127.0.0.1:8000)",
    )

    credential = commands.add_parser(
        "credentials", help="manage bearer credentials files (tokens are printed once, only hashes are stored)"
    )
    credential_commands = credential.add_subparsers(dest="credentials_command", required=True)
    add = credential_commands.add_parser("add", help="create a token and append its hash to a credentials file")
    add.add_argument("--file", type=Path, required=True, help="credentials YAML file (created if missing)")
    add.add_argument("--id", required=True, help="a name for the credential, shown in logs (never the secret)")
    add.add_argument("--tenant", required=True, help="tenant the credential is bound to")
    add.add_argument("--role", required=True, help="agent (collector) or responder | reviewer | admin (query API)")
    add.add_argument("--agent-id", default="", help="collector: the agent identity stamped on its spans")

    verify = commands.add_parser("verify", help="check a run against its audit hash chain (through the query API)")
    verify.add_argument("run_id", help="the agent.run.id")
    verify.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")
    verify.add_argument("--json", action="store_true", help="print the JSON the API returned")

    export = commands.add_parser("export", help="write a run's evidence bundle (zip) for an auditor")
    export.add_argument("run_id", help="the agent.run.id")
    export.add_argument("-o", "--output", type=Path, help="file to write (default agentledger-evidence-RUN_ID.zip)")
    export.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")

    checkpoint = commands.add_parser(
        "checkpoint", help="print the latest signed checkpoints of the audit logs, or `verify` the logs against them"
    )
    checkpoint.add_argument("action", nargs="?", choices=["verify"], help="verify: check every log (through the API)")
    _storage_flags(checkpoint)
    checkpoint.add_argument("--tenant", help="only this tenant's logs")
    checkpoint.add_argument("--json", action="store_true", help="print JSON")
    checkpoint.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing audit chain links")
    keygen.add_argument("--out", type=Path, required=True, help="where to write the private key (PEM, mode 0600)")

    phoenix_sync = commands.add_parser(
        "phoenix-sync", help="sync annotations with Phoenix now (through the query API; `up` also does it periodically)"
    )
    phoenix_sync.add_argument(
        "--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)"
    )

    timeline = commands.add_parser("timeline", help="print the incident timeline of a run (through the query API)")
    timeline.add_argument("run_id", help="the agent.run.id")
    timeline.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")
    timeline.add_argument("--json", action="store_true", help="print the JSON the API returned")

    runs = commands.add_parser("runs", help="list recent runs, newest first, filtered (through the query API)")
    runs.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")
    for name, help_text in _RUN_FILTERS:
        runs.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE", help=help_text)
    findings = runs.add_mutually_exclusive_group()
    findings.add_argument("--has-findings", dest="has_findings", action="store_const", const=True,
                          help="only runs with audit findings")  # fmt: skip
    findings.add_argument("--no-findings", dest="has_findings", action="store_const", const=False,
                          help="only runs without audit findings")  # fmt: skip
    runs.add_argument("--limit", type=int, default=20, help="runs per page (1-200; default 20)")
    runs.add_argument("--cursor", help="the cursor a previous page printed, for the next page")
    runs.add_argument("--json", action="store_true", help="print the JSON the API returned")

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
    deadletter = commands.add_parser(
        "deadletter", help="list, show and replay the spans exporters refused for good (works while `up` runs)"
    )
    deadletter_commands = deadletter.add_subparsers(dest="deadletter_command", required=True)
    for name, help_text in (
        ("list", "list the dead-letter entries of every exporter"),
        ("show", "print one entry: why its spans were refused, and the spans"),
        (
            "replay",
            "hand entries back to their exporter (a running `up` takes them within seconds, else its next start)",
        ),
    ):
        sub = deadletter_commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="YAML config file (env AGENTLEDGER_CONFIG)")
        sub.add_argument("--data-dir", type=Path, help="data folder of `up` (env AGENTLEDGER_DATA_DIR)")
        if name == "show":
            sub.add_argument("entry_id", help="the entry id, as `deadletter list` prints it")
            sub.add_argument("--spans", type=int, default=20, help="how many of its spans to print (default 20)")
        if name == "replay":
            sub.add_argument("entry_id", nargs="?", help="the entry id, as `deadletter list` prints it")
            sub.add_argument("--all", action="store_true", help="replay every entry")
    gate = commands.add_parser(
        "gate", help="compare an eval suite's candidate runs with the baseline's; exit 1 when a budget is exceeded"
    )
    gate.add_argument("--suite", required=True, help="agentledger.eval.suite of the runs")
    gate.add_argument("--baseline", required=True, help="agentledger.eval.version of the baseline runs")
    gate.add_argument("--candidate", required=True, help="agentledger.eval.version of the candidate runs")
    gate.add_argument("--budgets", type=Path, help="YAML file with a `budgets:` mapping (flags override it)")
    gate.add_argument("--max-success-rate-drop", type=float, help="percentage points (default 1)")
    gate.add_argument("--max-new-policy-violations", type=int, help="violations new on a case (default 0)")
    gate.add_argument("--max-cost-per-success-increase", type=float, help="percent (default 7)")
    gate.add_argument("--max-p95-latency-increase", type=float, help="percent (default 10)")
    gate.add_argument("--junit", type=Path, help="also write the checks as JUnit XML here")
    gate.add_argument("--markdown", type=Path, help="also write the report as Markdown here")
    gate.add_argument("--api-url", help=f"query API base URL (env {ENV_API_URL}; default http://127.0.0.1:8000)")
    redact = commands.add_parser(
        "redact", help="print what the redaction processor would mask in a file (one value per line), and why"
    )
    redact.add_argument("file", help="a UTF-8 text file, each line one value; `-` reads standard input")
    redact.add_argument("--config", type=Path, help="agentledger YAML config whose processors.redaction applies")
    return parser


def _cluster_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        help=f"ClickHouse cluster for ON CLUSTER / Replicated / Distributed DDL (env {ENV_CLICKHOUSE_CLUSTER})",
    )


def _role_parsers(commands: Any) -> None:
    """`agentledger collector` and `agentledger api`: one role per process, against a ClickHouse server."""
    for role, help_text in (
        ("collector", "run the OTLP receivers, pipeline and exporters only (needs a ClickHouse server DSN)"),
        ("api", "run the query API only (needs a ClickHouse server DSN)"),
    ):
        parser = commands.add_parser(role, help=help_text)
        _storage_flags(parser)
        _cluster_flag(parser)
        parser.add_argument("--host", help="address to bind (env AGENTLEDGER_HOST; default 127.0.0.1)")
        parser.add_argument("--tenant", help="tenant stamped on spans / served openly (env AGENTLEDGER_TENANT)")
        if role == "collector":
            parser.add_argument("--otlp-http-port", type=int, help=f"OTLP/HTTP port (default {DEFAULT_OTLP_HTTP_PORT})")
            parser.add_argument("--otlp-grpc-port", type=int, help=f"OTLP/gRPC port (default {DEFAULT_OTLP_GRPC_PORT})")
            parser.add_argument(
                "--allow-unauthenticated",
                action="store_true",
                help="accept spans without tokens on a non-loopback address (env AGENTLEDGER_ALLOW_UNAUTHENTICATED=1)",
            )
        else:
            parser.add_argument("--api-port", type=int, help=f"query API port (default {DEFAULT_API_PORT})")
            parser.add_argument(
                "--api-keys-file", type=Path, help=f"query API keys (env {ENV_API_KEYS_FILE}); required off loopback"
            )


def _cmd_role(args: argparse.Namespace) -> int:
    from agentledger.service import Role, ServiceError, run_service

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        run_service(settings, roles=frozenset({Role(args.command)}))
    except (ServiceError, StorageUnavailable, MigrationError, ConfigError) as error:
        raise CliError(str(error)) from error
    return EXIT_OK


def _cmd_redact(args: argparse.Namespace) -> int:
    from agentledger.collector.processors.redaction import RedactionConfig, explain

    config = RedactionConfig()
    if args.config is not None:
        processors = _settings(args).collector.processors
        configured = [value for key, value in processors.items() if str(key).split("/", 1)[0] == "redaction"]
        if configured and isinstance(configured[0], RedactionConfig):
            config = configured[0]
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror}") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CliError(f"{args.file} is not UTF-8 text (byte {error.start} cannot be decoded)") from error
    lines = text.splitlines()
    found = explain(lines, config)
    total = 0
    for number, (line, detections) in enumerate(zip(lines, found, strict=True), start=1):
        for item in detections:
            total += 1
            value = line[item.start : item.end]
            print(_printable(f"{number}:{item.start + 1}-{item.end}  {item.entity:<7} {value!r}  ({item.reason})"))
    changed = sum(1 for detections in found if detections)
    print(f"{total} value{'s' if total != 1 else ''} would be masked, in {changed} of {len(lines)} lines")
    return EXIT_OK


def _settings(args: argparse.Namespace) -> Settings:
    names = ("config", "data_dir", "dsn", "database", "host", "otlp_http_port", "otlp_grpc_port", "api_port",
             "tenant", "allow_unauthenticated", "api_keys_file", "jira_run_id_field", "cluster")  # fmt: skip
    flags = {name: getattr(args, name, None) for name in names}
    try:
        return load_settings(flags)
    except ConfigError as error:
        raise CliError(str(error)) from error


def _cmd_up(args: argparse.Namespace) -> int:
    from agentledger.service import ServiceError, run_service

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per Phoenix export batch would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def after_start(started: Settings) -> None:
        logger = logging.getLogger("agentledger")
        try:
            report = send_demo(started.collector_url, started.api_url)
        except DemoError as error:
            logger.error("demo failed: %s", error)
            return
        for run in report.runs:
            label = f"INCIDENT {run.incident}" if run.incident else "demo run"
            logger.info("%s %s: %s: %s", label, run.run_id, run.description, run_page_url(started.api_url, run.run_id))
        logger.info("demo: %s", report.writes_status)

    local_phoenix = None
    if args.phoenix:
        from agentledger.phoenix import LocalPhoenixError, start_local_phoenix, with_phoenix_exporter

        try:
            local_phoenix = start_local_phoenix(settings, args.phoenix_port)
        except LocalPhoenixError as error:
            raise CliError(str(error)) from error
        settings = with_phoenix_exporter(settings, local_phoenix.url)
    try:
        run_service(settings, after_start if args.demo else None)
    except (ServiceError, StorageUnavailable, MigrationError, ConfigError) as error:
        raise CliError(_storage_hint(str(error), settings)) from error
    finally:
        if local_phoenix is not None:
            local_phoenix.stop()
    return EXIT_OK


def _print_migrations(settings: Settings) -> int:
    """The whole DDL script for the configured shape, without touching storage (no DSN is opened)."""
    from agentledger.ingest.cluster_ddl import create_database_ddl, ledger_ddl, render
    from agentledger.ingest.migrations import planned_statements

    shape = settings.ddl_shape
    try:
        planned = planned_statements(shape)
    except MigrationError as error:
        raise CliError(str(error), EXIT_FAILED) from error
    where = f"cluster {shape.cluster}" if shape.cluster is not None else "a single node"
    sections = [(f"agentledger schema for {where}, database {shape.database}",
                 [create_database_ddl(shape), f"USE `{shape.database}`", ledger_ddl(shape)])]  # fmt: skip
    sections += [(f"{migration.version:04d}_{migration.name}", statements) for migration, statements in planned]
    print(render(sections), end="")
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
    if args.print:
        return _print_migrations(settings)
    try:
        client = connect(
            settings.clickhouse_dsn, settings.database, settings.cluster, settings.embedded.server_settings()
        )
        try:
            applied = migrate(client, shape=settings.ddl_shape)
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
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        report = send_demo(url, api)
    except DemoError as error:
        raise CliError(str(error)) from error
    # stdout: one run per line, `run id<TAB>description<TAB>page`, incidents marked; stderr: the writes' fate.
    for run in report.runs:
        description = f"INCIDENT {run.incident}: {run.description}" if run.incident else run.description
        print(f"{run.run_id}\t{description}\t{run_page_url(api, run.run_id)}")
    print(f"agentledger demo: {report.writes_status}", file=sys.stderr)
    return EXIT_OK


def _api_get(args: argparse.Namespace, resource: str, raw: bool = False) -> Any:
    """GETs /v1/runs/{run_id}/{resource} from the query API (JSON, or bytes when raw); CliError with a
    sentence on any failure."""
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        response = httpx.get(
            f"{api}/v1/runs/{run_id_path_segment(args.run_id)}/{resource}", headers=_auth_headers(), timeout=30
        )
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the query API at {api} ({error}); is `agentledger up` running?") from error
    if response.status_code == 404:
        raise CliError(f"no run with id {args.run_id!r}", EXIT_FAILED)
    if response.status_code != 200:
        raise CliError(f"the query API answered {response.status_code}: {_detail(response)}", EXIT_FAILED)
    return response.content if raw else response.json()


def _cmd_export(args: argparse.Namespace) -> int:
    bundle: bytes = _api_get(args, "evidence", raw=True)
    output = args.output or Path(evidence_file_name(args.run_id))
    try:
        output.write_bytes(bundle)
    except OSError as error:
        raise CliError(f"cannot write {output}: {error.strerror}") from error
    print(f"wrote {_printable(output)} ({len(bundle)} bytes); its README.md says how to verify it offline")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    body = _api_get(args, "verify")
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        counts = f"{body['links']} links, {body['spans_checked']} spans checked"
        lines = [f"run {body['run_id']}: {body['status']} ({counts})"]
        for item in body["chain_breaks"]:
            where = f"link {item['seq']}" + (f" in log {item['collector_id']}" if item.get("collector_id") else "")
            lines.append(f"  {where}: {item.get('finding', 'break')}: {item['problem']}")
        for item in body["findings"]:
            since = f" (chained in link {item['link_seq']})" if item["link_seq"] is not None else ""
            lines.append(f"  span {item['trace_id']}:{item['span_id']} {item['name']!r}: {item['problem']}{since}")
        print("\n".join(_printable(line) for line in lines))
    return EXIT_OK if body["status"] == "intact" else EXIT_FAILED


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    """Without an action: the latest checkpoint of each log, read from the checkpoint files (works while
    `up` runs: they are append-only). `verify`: the query API checks every log against every checkpoint."""
    if args.action == "verify":
        return _checkpoint_verify(args)
    from agentledger.collector.exporters.clickhouse import checkpoint_sink_of
    from agentledger.ingest.checkpoints import CheckpointFileError, latest_checkpoints, read_checkpoints
    from agentledger.service import clickhouse_exporter

    settings = _settings(args)
    config = clickhouse_exporter(settings)
    sink = checkpoint_sink_of(config, settings.data_dir) if config is not None else None
    if sink is None:
        raise CliError("no ClickHouse exporter is configured, so there are no audit checkpoints")
    try:
        latest = latest_checkpoints(read_checkpoints(sink.directory, args.tenant))
    except CheckpointFileError as error:
        raise CliError(str(error), EXIT_FAILED) from error
    if args.json:
        print(json.dumps([checkpoint.to_json() for _, checkpoint in sorted(latest.items())], indent=2))
    elif not latest:
        print(f"no checkpoints in {sink.directory}")
    for (tenant, collector_id), checkpoint in sorted(latest.items()) if not args.json else ():
        signed = "signed" if checkpoint.signature else "unsigned"
        print(f"{tenant}\t{collector_id}\tsize {checkpoint.size}\t{checkpoint.root}\t{checkpoint.time_ns}\t{signed}")
    return EXIT_OK


def _checkpoint_verify(args: argparse.Namespace) -> int:
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        response = httpx.get(f"{api}/v1/audit/log/verify", headers=_auth_headers(), timeout=120)
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the query API at {api} ({error}); is `agentledger up` running?") from error
    if response.status_code != 200:
        raise CliError(f"the query API answered {response.status_code}: {_detail(response)}", EXIT_FAILED)
    body = response.json()
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"tenant {body['tenant']}: {body['status']}")
        for log in body["logs"]:
            print(f"  log {log['collector_id']}: {log['size']} links, checkpoint covers {log['checkpoint_size']},"
                  f" {log['links_after_checkpoint']} after it")  # fmt: skip
            for problem in log["problems"]:
                print(f"    {problem['finding']}: {problem['problem']}")
    return EXIT_OK if body["status"] == "consistent" else EXIT_FAILED


def _cmd_keygen(args: argparse.Namespace) -> int:
    from agentledger.ingest.signing import generate_key_pair

    try:
        public = generate_key_pair(args.out)
    except FileExistsError:
        raise CliError(f"{args.out} exists already; refusing to overwrite a signing key") from None
    except OSError as error:
        raise CliError(f"cannot write {args.out}: {error.strerror}") from None
    print(public, end="")
    print(f"private key written to {args.out}; set exporters.clickhouse.signing_key_file to it and give"
          " auditors the public key above", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _cmd_phoenix_sync(args: argparse.Namespace) -> int:
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    try:
        response = httpx.post(f"{api}/v1/phoenix/sync", headers=_auth_headers(), timeout=300)
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the query API at {api} ({error}); is `agentledger up` running?") from error
    if response.status_code != 200:
        raise CliError(f"the query API answered {response.status_code}: {_detail(response)}", EXIT_FAILED)
    report = response.json()
    refused = report["push_failures"]
    print(
        f"pulled {report['pulled']} annotation(s) from Phoenix ({report['unchanged']} unchanged); verified"
        f" {report['runs_verified']} run(s), pushed {report['pushed']} finding annotation(s)"
        + (f", {refused} run(s) refused by Phoenix (retried next sync)" if refused else "")
    )
    return EXIT_OK


def _cmd_timeline(args: argparse.Namespace) -> int:
    body = _api_get(args, "timeline?verify=true")
    if args.json:
        print(json.dumps(body, indent=2))
        return EXIT_OK
    run, audit, integrity = body["run"], body["audit"], body.get("integrity")
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    # The counts are the API's: spans from the run index, writes from the timeline's writes.
    lines = [
        f"run {run['run_id']}  agent {run['agent_name'] or run['agent_id']}  outcome {run['outcome'] or '-'}"
        f"  traces {len(run['trace_ids'])}  spans {run['span_count']}  writes {len(body['writes'])}",
        f"page {run_page_url(api, run['run_id'])}",
    ]
    if integrity is not None:
        lines.append(
            f"integrity {integrity['status']} ({integrity['links']} links, {integrity['spans_checked']} spans checked)"
        )
    lines.append(f"findings {len(audit['findings'])}" + ("" if audit["findings"] else " (all checks passed)"))
    for finding in sorted(audit["findings"], key=lambda f: _severity_rank(str(f["severity"]))):
        evidence = ([f"span {finding['span_id']}"] if finding["span_id"] else []) + (
            [f"write {finding['write_ref']}"] if finding["write_ref"] else []
        )
        where = f" ({', '.join(evidence)})" if evidence else ""
        lines.append(f"  [{finding['severity']}] {finding['check']}: {finding['message']}{where}")
    lines.append("")
    for entry in body["entries"]:
        details = "  ".join(f"{k}={v}" for k, v in entry["details"].items() if len(str(v)) <= 80)
        flagged = ("  ! " + ", ".join(entry["findings"])) if entry["findings"] else ""
        time_text = str(entry["start_time"])[:23] + "Z"  # milliseconds: the JSON keeps the nanoseconds
        lines.append(f"{time_text}  {entry['type']:<16} {entry['name']:<32} {entry['status']:<5} {details}{flagged}")
    print("\n".join(_printable(line) for line in lines))
    return EXIT_OK


# `agentledger runs` options -> GET /v1/runs query parameters of the same name.
_RUN_FILTERS: Final = (
    ("agent", "gen_ai.agent.id or gen_ai.agent.name"),
    ("workflow", "gen_ai.workflow.name"),
    ("outcome", "success, failure, escalated, cancelled"),
    ("tool", "runs that called this tool"),
    ("target", "runs that touched this target"),
    ("rule", "runs with a finding of this audit rule"),
    ("autonomy_level", "the autonomy level granted"),
    ("since", "RFC 3339: runs that started at or after"),
    ("until", "RFC 3339: runs that started at or before"),
)


def _severity_rank(severity: str) -> int:
    from agentledger.query_api.totals import severity_rank

    return severity_rank(severity)


def _cmd_runs(args: argparse.Namespace) -> int:
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    params: dict[str, str | int] = {"limit": args.limit, "with_findings": "true"}
    params |= {name: getattr(args, name) for name, _ in _RUN_FILTERS if getattr(args, name)}
    if args.has_findings is not None:
        params["has_violations"] = "true" if args.has_findings else "false"
    if args.cursor:
        params["cursor"] = args.cursor
    try:
        response = httpx.get(f"{api}/v1/runs", params=params, headers=_auth_headers(), timeout=120)
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the query API at {api} ({error}); is `agentledger up` running?") from error
    if response.status_code != 200:
        raise CliError(f"the query API answered {response.status_code}: {_detail(response)}", EXIT_FAILED)
    body = response.json()
    if args.json:
        print(json.dumps(body, indent=2))
        return EXIT_OK
    lines = ["started                  run                                  agent               outcome    findings"
             "      writes  cost       duration  page"]  # fmt: skip
    for run in body["runs"]:
        findings = "none" if not run["findings"] else f"{run['findings']} {run['top_severity'] or ''}".strip()
        lines.append(
            f"{run['first_start'][:23]}Z  {run['run_id']:<36} {(run['agent_name'] or run['agent_id']):<19}"
            f" {run['outcome'] or '-':<10} {findings:<13} {run['writes']:>6}  {_usd(run['cost_usd']):<10}"
            f" {_seconds(run['duration_ms']):>8}  {run_page_url(api, run['run_id'])}"
        )
    if not body["runs"]:
        lines.append("(no runs match)")
    if body["next_cursor"]:
        lines.append(f"more: agentledger runs --cursor {body['next_cursor']} (with the same filters)")
    print("\n".join(_printable(line) for line in lines))
    return EXIT_OK


def _usd(value: float) -> str:
    return f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"


def _seconds(milliseconds: float) -> str:
    return f"{milliseconds / 1000:.3f}s"


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
        token = add_credential(path, args.key_id, args.tenant, args.role, roles=ROLES)
    except CredentialsError as error:
        raise CliError(str(error)) from error
    print(token)
    print(
        f"API key {args.key_id!r} ({args.role}, tenant {args.tenant}) added to {path}; the token above is shown"
        " only now. Restart `agentledger up` to load it.",
        file=sys.stderr,
    )
    return EXIT_OK


def _printable(text: object) -> str:
    """text with every non-printable character (control, ANSI escape, line break, bidirectional override)
    shown as its Python escape, so a value from the API (an agent's name, a span's name) cannot move the
    cursor, recolour the terminal or forge a line of output."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text[:200]
    if isinstance(detail, list):  # a validation error: one message per refused value
        return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail)


def _cmd_gate(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in GateBudgets.model_fields}
    try:
        budgets = load_budgets(args.budgets, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from error
    api = _env_url(args.api_url, ENV_API_URL, f"http://127.0.0.1:{DEFAULT_API_PORT}")
    with open_api(api, _auth_headers()) as http:
        try:
            comparison = fetch_comparison(http, args.suite, args.baseline, args.candidate)
        except GateError as error:
            raise CliError(str(error), EXIT_FAILED if error.not_found else EXIT_USAGE) from error
    report = judge(comparison, budgets)
    print(report.text())
    for path, content in ((args.junit, report.junit_xml), (args.markdown, report.markdown)):
        if path is not None:
            try:
                path.write_text(content(), encoding="utf-8")
            except OSError as error:
                raise CliError(f"cannot write {path}: {error.strerror}") from error
    return EXIT_OK if report.passed else EXIT_FAILED


def _cmd_credentials(args: argparse.Namespace) -> int:
    try:
        token = add_credential(args.file, args.id, args.tenant, args.role, args.agent_id)
    except CredentialsError as error:
        raise CliError(str(error)) from error
    print(token)
    print(f"added {args.id!r} to {args.file}; the token above is shown only now", file=sys.stderr)
    return EXIT_OK


def _cmd_deadletter(args: argparse.Namespace) -> int:
    from agentledger.collector.deadletter import (
        DeadLetterError,
        all_entries,
        find_entry,
        iter_spans_summary,
        mark_for_replay,
        read_entry_spans,
    )

    spool = _settings(args).spool_directory
    try:
        if args.deadletter_command == "list":
            entries = all_entries(spool)
            if not entries:
                print(f"no dead-letter entries in {spool}")
            for entry in entries:
                marked = "  (replay pending)" if entry.replay_requested else ""
                print(f"{entry.id}\t{entry.exporter}\t{entry.time}\t{entry.span_count} spans\t{entry.reason}"
                      f"\ttenants {','.join(entry.tenants)}{marked}")  # fmt: skip
            return EXIT_OK
        if args.deadletter_command == "show":
            entry = find_entry(spool, args.entry_id)
            print(f"id:        {entry.id}\nexporter:  {entry.exporter}\ntime:      {entry.time}\n"
                  f"reason:    {entry.reason}\nerror:     {entry.error}\nspans:     {entry.span_count}\n"
                  f"batch id:  {entry.batch_id}\ntenants:   {', '.join(entry.tenants)}\n"
                  f"replay:    {'pending' if entry.replay_requested else 'not requested'}")  # fmt: skip
            for line in iter_spans_summary(read_entry_spans(spool, entry), args.spans):
                print(f"  {line}")
            return EXIT_OK
        if args.all == bool(args.entry_id):
            raise CliError("say which entry to replay: an entry id or --all")
        entries = all_entries(spool) if args.all else [find_entry(spool, args.entry_id)]
        for entry in entries:
            mark_for_replay(spool, entry)
        print(f"marked {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} for replay; a running"
              " `agentledger up` exports them within seconds, otherwise its next start does")  # fmt: skip
        return EXIT_OK
    except DeadLetterError as error:
        raise CliError(str(error), EXIT_FAILED) from error
    except OSError as error:
        raise CliError(f"cannot read the dead-letter store in {spool}: {error.strerror}", EXIT_FAILED) from error


_COMMANDS = {
    "up": _cmd_up,
    "migrate": _cmd_migrate,
    "demo": _cmd_demo,
    "timeline": _cmd_timeline,
    "runs": _cmd_runs,
    "phoenix-sync": _cmd_phoenix_sync,
    "verify": _cmd_verify,
    "export": _cmd_export,
    "keygen": _cmd_keygen,
    "checkpoint": _cmd_checkpoint,
    "credentials": _cmd_credentials,
    "import-writes": _cmd_import_writes,
    "keys": _cmd_keys,
    "gate": _cmd_gate,
    "deadletter": _cmd_deadletter,
    "collector": _cmd_role,
    "api": _cmd_role,
    "redact": _cmd_redact,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except CliError as error:
        print(_printable(f"agentledger {args.command}: {error}"), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
