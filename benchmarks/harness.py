"""What the benchmarks share: an embedded chDB database set up and removed, free ports, waiting for a
server, and counting stored spans in agentledger (its /metrics) and in Phoenix (its GraphQL project record
count, one request however many spans)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


@contextmanager
def embedded_chdb(
    database: str = "bench", prefix: str = "agentledger-bench-", kept_in: Path | None = None
) -> Iterator[Client]:
    """A migrated embedded chDB database in a fresh temporary folder, removed (with all it holds) on exit;
    or, with `kept_in`, the store in that folder (created if missing, migrated, kept on exit), so a large
    store is loaded once and measured again by later runs. The query condition cache is off: with it on,
    a repeated predicate gets 5-10x faster and a benchmark would measure the cache rather than the query."""
    # Imported here: the benchmarks that only drive servers need no storage engine in their own process.
    from agentledger.ingest.clickhouse import chdb_dsn, connect
    from agentledger.ingest.migrations import migrate

    folder = kept_in if kept_in is not None else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        client = connect(chdb_dsn(folder / "clickhouse"), database)
        try:
            client.set_client_setting("use_query_condition_cache", 0)
            migrate(client)
            yield client
        finally:
            client.close()
    finally:
        if kept_in is None:
            shutil.rmtree(folder, ignore_errors=True)


def phoenix_command() -> str | None:
    """The `phoenix` command: on PATH, else the checkout's .phoenix-venv (scripts/phoenix_venv.sh), else None."""
    local = Path(__file__).resolve().parents[1] / ".phoenix-venv" / "bin" / "phoenix"
    return shutil.which("phoenix") or (str(local) if local.exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, timeout: float = 120, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Waits until `url` answers 200; fails at once, with the end of its log, if `process` (the server) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise SystemExit(f"the server for {url} exited with {process.returncode} before answering:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def exported_spans(collector_url: str, exporter: str = "clickhouse") -> int:
    """Spans the collector's exporter has delivered (stored, hence queryable)."""
    metrics = httpx.get(f"{collector_url}/metrics", timeout=10).text
    prefix = f'agentledger_spans_exported_total{{exporter="{exporter}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix) :]))
    return 0


def phoenix_span_count(phoenix_url: str, project: str = "default") -> int:
    """Spans Phoenix has stored in a project."""
    response = httpx.post(
        f"{phoenix_url}/graphql",
        json={"query": "{ projects { edges { node { name recordCount } } } }"},
        timeout=30,
    )
    for edge in response.json()["data"]["projects"]["edges"]:
        if edge["node"]["name"] == project:
            return int(edge["node"]["recordCount"])
    return 0


def wait_until(done: Callable[[], bool], what: str, timeout: float = 600, poll: float = 0.05) -> float:
    """Seconds until `done()` holds; a SystemExit naming `what` after `timeout`, never an endless wait."""
    began = time.perf_counter()
    while not done():
        if time.perf_counter() - began > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.perf_counter() - began


@dataclass(frozen=True)
class UpProcess:
    """An `agentledger up` started by start_up: the process, its log and its ports."""

    process: subprocess.Popen[bytes]
    log: Path
    http_port: int
    grpc_port: int
    api_port: int

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def start_up(workdir: Path, config_text: str, log_name: str = "collector.log") -> UpProcess:
    """Starts `agentledger up` with this config over <workdir>/data on free ports, output in <workdir>/<log_name>
    (the benchmarks that measure the whole process all start it this way)."""
    http_port, grpc_port, api_port = free_port(), free_port(), free_port()
    config = workdir / "agentledger.yaml"
    config.write_text(config_text)
    log_path = workdir / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentledger", "up", "--config", str(config), "--data-dir", str(workdir / "data"),
             "--otlp-http-port", str(http_port), "--otlp-grpc-port", str(grpc_port), "--api-port", str(api_port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return UpProcess(process, log_path, http_port, grpc_port, api_port)
