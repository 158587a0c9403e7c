"""Arize Phoenix around `agentledger up`: the connection the API and sync derive from the phoenix exporter's
config, and `up --phoenix`, which starts a local Phoenix server and wires it in as an exporter."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

import httpx

from agentledger.collector.components import component_type
from agentledger.collector.config import PipelineSpec
from agentledger.collector.exporters.phoenix import PhoenixExporterConfig
from agentledger.query_api.phoenix_sync import PhoenixConnection
from agentledger.settings import Settings

logger = logging.getLogger("agentledger")

PHOENIX_TYPE: Final = "phoenix"
# Where scripts/phoenix_venv.sh installs Phoenix, relative to the checkout `up` is started from.
LOCAL_VENV_COMMAND: Final = Path(".phoenix-venv") / "bin" / "phoenix"
START_TIMEOUT_S: Final = 90.0


class LocalPhoenixError(RuntimeError):
    """A local Phoenix could not be started; the message says why in a sentence."""


def phoenix_exporter(settings: Settings) -> PhoenixExporterConfig | None:
    """The first phoenix exporter of the traces pipeline: the Phoenix that timelines link to and sync with."""
    for component_id in settings.collector.pipeline.exporters:
        config = settings.collector.exporters[component_id]
        if component_type(component_id) == PHOENIX_TYPE and isinstance(config, PhoenixExporterConfig):
            return config
    return None


def phoenix_connection(settings: Settings) -> PhoenixConnection | None:
    config = phoenix_exporter(settings)
    if config is None:
        return None
    return PhoenixConnection(
        endpoint=config.endpoint,
        project=config.project,
        ui_url=config.link_base_url,
        headers=config.request_headers(),
        timeout_s=config.timeout_s,
        lookback_hours=config.sync.lookback_hours,
        page_base_url=settings.api_url,
    )


def find_phoenix_command() -> str | None:
    on_path = shutil.which("phoenix")
    if on_path:
        return on_path
    return str(LOCAL_VENV_COMMAND.resolve()) if LOCAL_VENV_COMMAND.exists() else None


class LocalPhoenix:
    """A Phoenix server child process with its data under <data dir>/phoenix, on loopback."""

    def __init__(self, command: str, working_dir: Path, port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._command = command
        self._working_dir = working_dir
        self._port = port
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._working_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        env.update(
            PHOENIX_WORKING_DIR=str(self._working_dir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self._port),
            # Its gRPC listener binds all interfaces whatever PHOENIX_HOST says, and 4317 is ours: a free port.
            PHOENIX_GRPC_PORT=str(_free_port()),
            PHOENIX_TELEMETRY_ENABLED="false",
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        )
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._command, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalPhoenixError(
                    f"Phoenix exited with status {self._process.returncode} while starting; see {self._log_path}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    logger.info("Phoenix: %s (log %s)", self.url, self._log_path)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LocalPhoenixError(f"Phoenix did not answer {self.url}/healthz within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def start_local_phoenix(settings: Settings, port: int) -> LocalPhoenix:
    command = find_phoenix_command()
    if command is None:
        raise LocalPhoenixError(
            "--phoenix needs the `phoenix` command (Arize Phoenix), which is neither on PATH nor in"
            f" ./{LOCAL_VENV_COMMAND}: install it with `bash scripts/phoenix_venv.sh` or `pip install arize-phoenix`"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    phoenix = LocalPhoenix(command, settings.data_dir / "phoenix", port, settings.data_dir / "phoenix.log")
    phoenix.start()
    return phoenix


def with_phoenix_exporter(settings: Settings, endpoint: str) -> Settings:
    """The settings with a phoenix exporter to `endpoint` in the traces pipeline (replacing the endpoint of
    one the config file already has, keeping its other settings)."""
    collector = settings.collector
    exporters = dict(collector.exporters)
    existing = next((cid for cid in collector.pipeline.exporters if component_type(cid) == PHOENIX_TYPE), None)
    component_id = existing or PHOENIX_TYPE
    current = exporters.get(component_id)
    base = current if isinstance(current, PhoenixExporterConfig) else PhoenixExporterConfig()
    exporters[component_id] = base.model_copy(update={"endpoint": endpoint})
    names = collector.pipeline.exporters if existing else (*collector.pipeline.exporters, component_id)
    pipeline = PipelineSpec(
        receivers=collector.pipeline.receivers, processors=collector.pipeline.processors, exporters=names
    )
    collector = dataclasses.replace(collector, exporters=exporters, pipeline=pipeline)
    return dataclasses.replace(settings, collector=collector)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
