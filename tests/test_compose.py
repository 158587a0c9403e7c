"""Checks docker-compose.yml, the Dockerfile and Grafana provisioning against agentledger.settings.

The files are parsed, never run: no Docker engine is needed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agentledger import settings
from agentledger.collector.exporters.phoenix import PhoenixExporterConfig

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROVISIONING = ROOT / "dashboards" / "provisioning"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"
CLICKHOUSE_SERVICE = "clickhouse"
CLICKHOUSE_HTTP_PORT = 8123
OTLP_GRPC_PORT = 4317
# What the operator would put in the environment or .env before `docker compose up`.
COMPOSE_VARIABLES = {"CLICKHOUSE_PASSWORD": "test-password"}

SETTINGS_ENV_NAMES = {value for name, value in vars(settings).items() if name.startswith("ENV_")}


def _load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


_COMPOSE_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<plain>\w+))")


def _interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $NAME, ${NAME} and the :-, -, :?, ?, :+, + forms."""

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["braced"] or match["plain"]
        value, operator, argument = variables.get(name), match["op"], match["arg"]
        if operator is None:
            return value or ""
        missing = not value if operator.startswith(":") else value is None
        if operator.endswith("-"):
            return argument if missing else str(value)
        if operator.endswith("+"):
            return "" if missing else argument
        assert not missing, f"compose refuses to start: {name} is required ({argument})"
        return str(value)

    return _COMPOSE_VARIABLE.sub(substitute, text)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(_interpolate(COMPOSE_FILE.read_text(encoding="utf-8"), COMPOSE_VARIABLES))
    assert isinstance(loaded, dict)
    return loaded


def _service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services[name]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """Compose accepts both a mapping and a list of NAME=value."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {name: "" if value is None else str(value) for name, value in raw.items()}


def _published_ports(service: dict[str, Any]) -> dict[int, int | None]:
    """Container port -> host port (None when Docker picks the host port)."""
    ports: dict[int, int | None] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            ports[int(entry["target"])] = None if published is None else int(published)
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        ports[int(parts[-1])] = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
    return ports


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, container path) of each mount, short or long syntax."""
    volumes: list[tuple[str, str]] = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            volumes.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            volumes.append((source, target))
    return volumes


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host folder, for the relative bind mounts."""
    return {target: (ROOT / source).resolve() for source, target in _volumes(service) if source.startswith(".")}


def _named_volume_targets(service: dict[str, Any]) -> set[str]:
    named = set(_compose().get("volumes") or {})
    return {target for source, target in _volumes(service) if source in named}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _command_words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list)
        return [str(word) for word in words]
    return shlex.split(arguments)


def _datasource() -> dict[str, Any]:
    datasources: list[dict[str, Any]] = _load_yaml(PROVISIONING / "datasources" / "clickhouse.yaml")["datasources"]
    assert len(datasources) == 1
    return datasources[0]


def test_agentledger_environment_names_are_settings_constants() -> None:
    names = set(_environment(_service("agentledger")))
    assert names - SETTINGS_ENV_NAMES == set()
    assert {settings.ENV_CLICKHOUSE_DSN, settings.ENV_HOST, settings.ENV_OTLP_HTTP_PORT, settings.ENV_API_PORT} <= names


def test_agentledger_ports_match_settings_defaults() -> None:
    agentledger = _service("agentledger")
    environment = _environment(agentledger)
    # Same port on the host as in the container, so the CLI's default URLs reach the stack.
    assert _published_ports(agentledger) == {
        settings.DEFAULT_OTLP_GRPC_PORT: settings.DEFAULT_OTLP_GRPC_PORT,
        settings.DEFAULT_OTLP_HTTP_PORT: settings.DEFAULT_OTLP_HTTP_PORT,
        settings.DEFAULT_API_PORT: settings.DEFAULT_API_PORT,
    }
    assert environment[settings.ENV_OTLP_GRPC_PORT] == str(settings.DEFAULT_OTLP_GRPC_PORT)
    assert environment[settings.ENV_OTLP_HTTP_PORT] == str(settings.DEFAULT_OTLP_HTTP_PORT)
    assert environment[settings.ENV_API_PORT] == str(settings.DEFAULT_API_PORT)
    # Bound to loopback, the published ports would lead nowhere.
    assert environment[settings.ENV_HOST] == "0.0.0.0"


def test_agentledger_dsn_points_at_the_clickhouse_service() -> None:
    dsn = _environment(_service("agentledger"))[settings.ENV_CLICKHOUSE_DSN]
    assert dsn.startswith("http://")
    parsed = urlsplit(dsn)
    assert (parsed.hostname, parsed.port) == (CLICKHOUSE_SERVICE, CLICKHOUSE_HTTP_PORT)
    clickhouse = _service(CLICKHOUSE_SERVICE)
    exposed = {int(str(port).split("/", 1)[0]) for port in clickhouse.get("expose", [])}
    assert CLICKHOUSE_HTTP_PORT in set(_published_ports(clickhouse)) | exposed
    assert _service("agentledger")["depends_on"][CLICKHOUSE_SERVICE] == {"condition": "service_healthy"}


def test_clickhouse_credentials_agree_across_services() -> None:
    dsn = urlsplit(_environment(_service("agentledger"))[settings.ENV_CLICKHOUSE_DSN])
    clickhouse = _environment(_service(CLICKHOUSE_SERVICE))
    datasource = _datasource()
    assert dsn.username == clickhouse["CLICKHOUSE_USER"] == datasource["jsonData"]["username"]
    grafana = _environment(_service("grafana"))
    assert dsn.password == clickhouse["CLICKHOUSE_PASSWORD"] == grafana["CLICKHOUSE_PASSWORD"] == "test-password"
    assert datasource["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"


def test_database_is_the_settings_default_everywhere() -> None:
    environment = _environment(_service("agentledger"))
    assert environment.get(settings.ENV_DATABASE, settings.DEFAULT_DATABASE) == settings.DEFAULT_DATABASE
    assert _datasource()["jsonData"]["defaultDatabase"] == settings.DEFAULT_DATABASE


def test_phoenix_keeps_off_the_otlp_grpc_port() -> None:
    phoenix = _service("phoenix")
    environment = _environment(phoenix)
    # Unset, Phoenix takes 4317 on all interfaces.
    assert int(environment["PHOENIX_GRPC_PORT"]) != OTLP_GRPC_PORT
    assert OTLP_GRPC_PORT not in set(_published_ports(phoenix).values())
    assert environment["PHOENIX_TELEMETRY_ENABLED"] == "false"
    assert environment["PHOENIX_WORKING_DIR"] in _named_volume_targets(phoenix)


def test_grafana_datasource_targets_the_clickhouse_service() -> None:
    datasource = _datasource()
    assert datasource["type"] == "grafana-clickhouse-datasource"
    assert {key: datasource["jsonData"][key] for key in ("host", "port", "protocol")} == {
        "host": CLICKHOUSE_SERVICE,
        "port": CLICKHOUSE_HTTP_PORT,
        "protocol": "http",
    }
    plugins = _environment(_service("grafana"))["GF_INSTALL_PLUGINS"].split(",")
    assert "grafana-clickhouse-datasource" in [plugin.strip() for plugin in plugins]


def test_grafana_mounts_the_provisioning_folder_and_its_files_parse() -> None:
    mounts = _bind_mounts(_service("grafana"))
    assert mounts[GRAFANA_PROVISIONING] == PROVISIONING
    assert mounts[GRAFANA_DASHBOARDS] == ROOT / "dashboards"
    files = sorted(path.relative_to(PROVISIONING).as_posix() for path in PROVISIONING.rglob("*.yaml"))
    assert files == ["dashboards/agentledger.yaml", "datasources/clickhouse.yaml"]
    for name in files:
        assert _load_yaml(PROVISIONING / name)["apiVersion"] == 1
    providers = _load_yaml(PROVISIONING / "dashboards" / "agentledger.yaml")["providers"]
    assert [provider["options"]["path"] for provider in providers] == [GRAFANA_DASHBOARDS]


def test_dockerfile_runs_agentledger_up_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    last = {keyword: arguments for keyword, arguments in instructions}
    entrypoint = _command_words(last["ENTRYPOINT"]) if "ENTRYPOINT" in last else []
    command = _command_words(last["CMD"]) if "CMD" in last else []
    assert (entrypoint + command)[:2] == ["agentledger", "up"]
    assert last.get("USER", "root").split(":")[0] not in ("root", "0")
    # The compose service must run that image and command, not override them.
    agentledger = _service("agentledger")
    assert agentledger["build"] == "."
    assert "command" not in agentledger
    assert "entrypoint" not in agentledger


def test_dockerfile_copies_everything_pip_install_needs() -> None:
    # Copied one by one so that a local build/ or .venv never reaches the image.
    copied = {
        source.rstrip("/")
        for keyword, arguments in _dockerfile_instructions()
        if keyword == "COPY"
        for source in arguments.split()[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_folders = {folder.split("/")[0] for folder in project["tool"]["setuptools"]["package-dir"].values()}
    assert package_folders | {"pyproject.toml", project["project"]["readme"]} <= copied


# --- what must survive a container, pinned images, health ---------------------------------------------------


def _dockerfile_last() -> dict[str, str]:
    return {keyword: arguments for keyword, arguments in _dockerfile_instructions()}


def _container_user() -> str:
    return _dockerfile_last()["USER"].split(":")[0]


def _owned_by_container_user(path: str) -> bool:
    """Whether a RUN creates `path` and hands it to the image's user (so a new named volume starts so)."""
    user = _container_user()
    for keyword, arguments in _dockerfile_instructions():
        if keyword != "RUN":
            continue
        for step in arguments.split("&&"):
            words = shlex.split(step)
            if words[:1] == ["chown"] and path in words[2:] and words[1].split(":")[0] == user:
                return True
    return False


def test_every_service_has_a_healthcheck() -> None:
    for name, service in _compose()["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"service {name} has no healthcheck"
    command = _service("agentledger")["healthcheck"]["test"]
    # The agentledger image has no curl or wget: the check must use what it has, and probe both servers.
    assert command[1] == "python"
    assert "4318" in command[-1] and "8000" in command[-1] and "/healthz" in command[-1]


def test_images_are_pinned_never_latest() -> None:
    images = {name: service["image"] for name, service in _compose()["services"].items() if "image" in service}
    images["Dockerfile"] = next(arguments for keyword, arguments in _dockerfile_instructions() if keyword == "FROM")
    assert set(images) == {"clickhouse", "phoenix", "grafana", "Dockerfile"}
    for name, image in images.items():
        repository, _, tag = image.split("@")[0].rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and any(character.isdigit() for character in tag), f"{name}: {image} is not pinned"


def test_the_data_folder_holding_the_spool_is_on_a_named_volume() -> None:
    agentledger = _service("agentledger")
    data_dir = _environment(agentledger)[settings.ENV_DATA_DIR]
    assert data_dir in _named_volume_targets(agentledger)
    assert _owned_by_container_user(data_dir)
    # The spool defaults to <data dir>/spool: the config mounted for the container must not move it elsewhere.
    loaded = _compose_settings()
    assert loaded.data_dir == Path(data_dir)
    assert loaded.collector.spool.enabled and loaded.collector.spool.directory is None


def test_the_api_keys_file_is_created_and_read_by_the_containers_user(tmp_path: Path) -> None:
    agentledger = _service("agentledger")
    keys_file = Path(_environment(agentledger)[settings.ENV_API_KEYS_FILE])
    # Its folder is a named volume the image's user owns, not a read-only bind mount of a host folder.
    assert str(keys_file.parent) in _named_volume_targets(agentledger)
    assert _owned_by_container_user(str(keys_file.parent))
    # `docker compose run --rm agentledger keys create ...` runs `agentledger keys create ...`.
    assert _command_words(_dockerfile_last()["ENTRYPOINT"]) == ["agentledger"]
    assert _command_words(_dockerfile_last()["CMD"]) == ["up"]
    # ...which appends to the file named by the service's environment, without --file.
    local_keys = tmp_path / keys_file.name
    environment = {**os.environ, settings.ENV_API_KEYS_FILE: str(local_keys)}
    created = subprocess.run(
        [sys.executable, "-m", "agentledger", "keys", "create", "--tenant", "default", "--role", "admin",
         "--id", "ops"],
        env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() and local_keys.exists()
    assert local_keys.stat().st_mode & 0o777 == 0o600  # the writer (the container's user) reads it


def _compose_settings() -> settings.Settings:
    """The settings `agentledger up` builds in the container, with the mounted config read from the repo."""
    agentledger = _service("agentledger")
    environment = _environment(agentledger)
    config_in_container = environment[settings.ENV_CONFIG]
    mounts = {target: (ROOT / source).resolve() for source, target in _volumes(agentledger) if source.startswith(".")}
    assert config_in_container in mounts, "AGENTLEDGER_CONFIG must name a file mounted into the container"
    environment[settings.ENV_CONFIG] = str(mounts[config_in_container])
    return settings.load_settings({}, environment)


def test_the_phoenix_exporter_sends_to_the_phoenix_service() -> None:
    collector = _compose_settings().collector
    phoenix_port = int(_environment(_service("phoenix")).get("PHOENIX_PORT", "6006"))

    assert list(collector.pipeline.exporters) == ["clickhouse", "phoenix"]
    phoenix = collector.exporters["phoenix"]
    assert isinstance(phoenix, PhoenixExporterConfig)
    endpoint = urlsplit(phoenix.endpoint)
    assert (endpoint.hostname, endpoint.port) == ("phoenix", phoenix_port)
    assert phoenix_port in _published_ports(_service("phoenix"))
    assert "phoenix" in _service("agentledger")["depends_on"]


def test_dockerfile_exposes_both_otlp_ports_and_the_api() -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, arguments in _dockerfile_instructions()
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert exposed == {settings.DEFAULT_OTLP_GRPC_PORT, settings.DEFAULT_OTLP_HTTP_PORT, settings.DEFAULT_API_PORT}
