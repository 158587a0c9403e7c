"""Shared fixtures: one embedded chDB engine per test process, a fresh ClickHouse database per test,
and helpers that start the real `agentledger up` as a subprocess and send spans with the OTel SDK."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.auth import Authenticator
from agentledger.collector.config import OtlpReceiverConfig, SpoolConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.spool import Position, Spool, encode_batch, encode_v1_record
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.emitter import (
    ContentCapture,
    Document,
    agent_run,
    approval,
    downstream_write,
    policy_decision,
    prompt,
    retrieval,
    tool_call,
)
from agentledger.ingest.clickhouse import chdb_dsn, connect
from agentledger.ingest.migrations import migrate
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.schema import conventions as conv
from agentledger.schema.conventions import ApprovalDecisionValues as Decision
from agentledger.schema.conventions import InputProvenanceValues as From
from agentledger.schema.conventions import PolicyDecisionValues as Policy
from agentledger.schema.conventions import ToolAccessValues as Access
from agentledger.schema.conventions import WriteActionValues as Action
from agentledger.schema.run_ids import run_id_path_segment

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def engine_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one chDB data folder this test process may open (chDB allows one path per process)."""
    return chdb_dsn(tmp_path_factory.mktemp("chdb"))


@pytest.fixture
def database(engine_dsn: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    admin = connect(engine_dsn, "default")
    admin.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
    admin.close()


@pytest.fixture
def client(engine_dsn: str, database: str) -> Iterator[Client]:
    """A client bound to a fresh, migrated database of the shared engine."""
    ch = connect(engine_dsn, database)
    migrate(ch)
    yield ch
    ch.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    process: subprocess.Popen[str]
    collector_url: str
    api_url: str
    data_dir: Path
    log_path: Path
    grpc_endpoint: str

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_service(data_dir: Path, *extra: str, env_overrides: dict[str, str] | None = None) -> RunningService:
    """Starts `agentledger up` in its own process and data folder; waits until both servers answer."""
    http_port, grpc_port, api_port = free_port(), free_port(), free_port()
    log_path = data_dir.parent / f"{data_dir.name}-up.log"
    log_file = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    env.update(env_overrides or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "agentledger", "up", "--data-dir", str(data_dir),
         "--otlp-http-port", str(http_port), "--otlp-grpc-port", str(grpc_port), "--api-port", str(api_port),
         *extra],
        stdout=log_file, stderr=subprocess.STDOUT, text=True, env=env, cwd=data_dir.parent,
    )  # fmt: skip
    service = RunningService(
        process, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{api_port}", data_dir, log_path,
        f"127.0.0.1:{grpc_port}",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"agentledger up exited with {process.returncode}:\n{service.log()}")
        try:
            if (
                httpx.get(f"{service.api_url}/healthz", timeout=2).status_code == 200
                and httpx.get(f"{service.collector_url}/healthz", timeout=2).status_code == 200
            ):
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    service.stop()
    raise AssertionError(f"agentledger up did not become ready:\n{service.log()}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(tmp_path / "data")
    yield running
    running.stop()


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """`app` behind a real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    config = uvicorn.Config(app, port=free_port(), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def served_api(client: Client) -> Iterator[httpx.Client]:
    """The open app behind a real uvicorn server: what a client sends is what it receives (Starlette's
    TestClient decodes percent-escapes in paths twice, and never checks the response headers)."""
    with (
        serve_asgi(create_app(client, QueryApiConfig(tenant="default"))) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def wait_for_timeline(
    api_url: str, run_id: str, entries: int, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Polls the timeline until it has `entries` entries: export from the spool is asynchronous."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/v1/runs/{run_id_path_segment(run_id)}/timeline", timeout=10, headers=headers)
        if response.status_code == 200:
            body = response.json()
            if len(body["entries"]) >= entries:
                return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not reach {entries} entries in {timeout}s: {body}")


def sdk_tracer_provider(collector_url: str, service_name: str = "test-agent") -> TracerProvider:
    """A TracerProvider exporting synchronously with the SDK's own OTLP/HTTP protobuf exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")))
    return provider


def otlp_request_body(run_id: str, spans: int, payload_bytes: int = 200) -> bytes:
    """An OTLP protobuf export request of `spans` SDK spans of one run, as the SDK's exporters encode it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for index in range(spans):
        tracer.start_span(f"s{index}", attributes={conv.AGENT_RUN_ID: run_id, "payload": "x" * payload_bytes}).end()
    finished: list[ReadableSpan] = list(exporter.get_finished_spans())
    return bytes(encode_spans(finished).SerializeToString())


def direct_pipeline(client: Client) -> Pipeline:
    """A pipeline without spool that stores synchronously through the real ClickHouse exporter."""
    return Pipeline([], [("clickhouse", ClickHouseExporter(client))])


def otlp_ingest(
    pipeline: Pipeline,
    telemetry: CollectorTelemetry | None = None,
    receiver: OtlpReceiverConfig | None = None,
) -> OtlpIngest:
    receiver = receiver or OtlpReceiverConfig()
    return OtlpIngest(
        receiver, pipeline, telemetry or CollectorTelemetry(), Authenticator(receiver.auth, receiver.tenant)
    )


# --- Arize Phoenix ----------------------------------------------------------------------------------------
# scripts/test.sh installs Phoenix into .phoenix-venv (scripts/phoenix_venv.sh); AGENTLEDGER_TEST_PHOENIX
# may name another `phoenix` executable.
PHOENIX_COMMAND_ENV = "AGENTLEDGER_TEST_PHOENIX"


def phoenix_command() -> str:
    explicit = os.environ.get(PHOENIX_COMMAND_ENV)
    candidate = Path(explicit) if explicit else REPO_ROOT / ".phoenix-venv" / "bin" / "phoenix"
    if not candidate.exists():
        raise AssertionError(
            f"no Phoenix server at {candidate}: run `bash scripts/phoenix_venv.sh` (scripts/test.sh does) or set"
            f" {PHOENIX_COMMAND_ENV}"
        )
    return str(candidate)


@dataclass
class RunningPhoenix:
    """A real Phoenix server on loopback, offline, with its own working folder and ports."""

    working_dir: Path
    port: int
    grpc_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(self.working_dir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            # Phoenix's gRPC listener binds every interface whatever PHOENIX_HOST says: never 4317 (ours).
            PHOENIX_GRPC_PORT=str(self.grpc_port),
            PHOENIX_TELEMETRY_ENABLED="false",
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([phoenix_command(), "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"phoenix exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"phoenix did not answer /healthz in 90 s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_phoenix(folder: Path) -> RunningPhoenix:
    folder.mkdir(parents=True, exist_ok=True)
    phoenix = RunningPhoenix(folder / "phoenix", free_port(), free_port(), folder / "phoenix.log")
    phoenix.start()
    return phoenix


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPhoenix]:
    """One Phoenix per test module (it takes ~10 s to start); tests use their own Phoenix projects."""
    running = start_phoenix(tmp_path_factory.mktemp("phoenix"))
    yield running
    running.stop()


def phoenix_config(folder: Path, phoenix_url: str, project: str, extra: str = "") -> Path:
    """A config file exporting to ClickHouse and to Phoenix (fast retries, so tests see catch-up quickly)."""
    path = folder / f"agentledger-{project}.yaml"
    path.write_text(
        f"""
exporters:
  clickhouse: {{}}
  phoenix:
    endpoint: "{phoenix_url}"
    project: "{project}"
    retry: {{initial_interval_s: 0.2, max_interval_s: 1.0}}
{extra}
service:
  pipelines:
    traces:
      exporters: [clickhouse, phoenix]
""",
        encoding="utf-8",
    )
    return path


def phoenix_spans(phoenix_url: str, project: str, trace_id: str) -> list[dict[str, Any]]:
    """The spans of one trace as Phoenix's own REST API returns them."""
    response = httpx.get(
        f"{phoenix_url}/v1/projects/{project}/spans", params={"trace_id": trace_id, "limit": 1000}, timeout=10
    )
    if response.status_code == 404:  # the project appears with its first span
        return []
    response.raise_for_status()
    return list(response.json()["data"])


def wait_for_phoenix_spans(
    phoenix_url: str, project: str, trace_id: str, count: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Polls until Phoenix has `count` spans of the trace: it answers OTLP at once but stores asynchronously."""
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = phoenix_spans(phoenix_url, project, trace_id)
        if len(spans) >= count:
            return spans
        time.sleep(0.25)
    raise AssertionError(f"Phoenix holds {len(spans)} of {count} spans of trace {trace_id} after {timeout} s")


ARGUMENTS = {"order": "A-1001", "amount_eur": 40}


def send_reviewed_run(collector_url: str, run_id: str) -> None:
    """One run of every span type, with content (full capture), through the SDK's OTLP/HTTP exporter."""
    provider = sdk_tracer_provider(collector_url, service_name="refund-agent")
    with agent_run(
        "refund-agent-1", agent_name="refund-agent", run_id=run_id, capture=ContentCapture.FULL,
        tracer_provider=provider,
    ):  # fmt: skip
        with retrieval(
            "zendesk", provenance=From.USER_PROVIDED, query="ticket 4411",
            documents=[Document("SUP-4411", "Please refund order A-1001", 0.93)],
        ):  # fmt: skip
            pass
        with prompt("gpt-4.1-mini", [{"role": "user", "content": "Refund A-1001?"}], context={"ticket": 4411}) as call:
            answer = [{"role": "assistant", "content": "Refund 40 EUR."}]
            call.record_response(answer, input_tokens=120, output_tokens=9)
        with policy_decision("refund-limit") as policy:
            policy.decide(Policy.ALLOW, rule_id="under-50", reason="40 EUR is under the limit")
        with approval("issue_refund", tool_call_id="call_1", arguments=ARGUMENTS) as request:
            request.decide(Decision.APPROVED, "user:maria.lopez")
        with tool_call("issue_refund", access=Access.WRITE, arguments=ARGUMENTS, call_id="call_1") as refund:
            refund.set_result({"refund": "re_77"})
            with downstream_write("stripe", action=Action.CREATE, tool_call_id="call_1") as write:
                write.set_ref("re_77")
    provider.shutdown()


# --- spool fixtures -----------------------------------------------------------------------------------------


def numbered_batch(*values: int) -> pa.Table:
    """A span-less batch of numbers: spool tests only need records they can tell apart."""
    return pa.table({"n": pa.array(values, pa.int64())})


@dataclass(frozen=True)
class SpoolRecordLayout:
    number: int
    segment: Path
    start: int
    end: int


def build_spool(
    directory: Path, segments: Sequence[Sequence[int]], config: SpoolConfig | None = None, *, v1: bool = False
) -> list[SpoolRecordLayout]:
    """Writes a spool of the given segments, one record per number (segment i+1 holds segments[i]), and says
    where each record lies. `v1`: the segments are in the previous record format, as an upgrade finds them."""
    records: list[SpoolRecordLayout] = []
    if v1:
        folder = directory / "segments"
        folder.mkdir(parents=True, exist_ok=True)
        for index, numbers in enumerate(segments):
            path = folder / f"{index + 1:012d}.seg"
            data = b""
            for number in numbers:
                record = encode_v1_record(encode_batch(numbered_batch(number)))
                records.append(SpoolRecordLayout(number, path, len(data), len(data) + len(record)))
                data += record
            path.write_bytes(data)
        return records
    for numbers in segments:  # each opening of the spool starts a new segment
        spool = Spool(directory, config or SpoolConfig())
        for number in numbers:
            start = spool.end()
            end = spool.append(numbered_batch(number))
            path = directory / "segments" / f"{end.segment:012d}.seg"
            records.append(SpoolRecordLayout(number, path, start.offset, end.offset))
        spool.close()
    return records


def spool_numbers(spool: Spool) -> list[int]:
    """Every number the spool gives back from its start, reading record by record (damaged ones read empty)."""
    numbers: list[int] = []
    for record in spool.read(Position(1, 0), 10**9):
        if record.batch.num_columns:
            numbers += record.batch.column("n").to_pylist()
    return numbers
