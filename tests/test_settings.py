"""The config file, environment and flags combine with the documented precedence; bad values fail with
a sentence naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.collector.config import ConfigError
from agentledger.settings import load_settings
from tests.conftest import REPO_ROOT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentledger.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings({}, environ={})

    receiver = settings.collector.receiver
    assert receiver.protocols.http is not None and receiver.protocols.http.endpoint == "127.0.0.1:4318"
    assert receiver.protocols.grpc is not None and receiver.protocols.grpc.endpoint == "127.0.0.1:4317"
    assert settings.api.endpoint == "127.0.0.1:8000"
    assert (
        settings.clickhouse_dsn == f"chdb:///{(Path('.agentledger') / 'clickhouse').resolve().as_posix().lstrip('/')}"
    )
    assert settings.collector.pipeline.exporters == ("clickhouse",)
    assert settings.collector.spool.fsync == "always"


def test_the_example_config_is_valid_and_equals_the_defaults() -> None:
    from_example = load_settings({"config": REPO_ROOT / "agentledger.example.yaml"}, environ={})
    defaults = load_settings({}, environ={})

    assert from_example.collector == defaults.collector
    assert from_example.api == defaults.api


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "receivers:\n  otlp:\n    protocols:\n      http: {endpoint: 10.0.0.1:1111}\n"
                            "      grpc: {endpoint: 10.0.0.1:2222}\napi: {endpoint: 10.0.0.1:3333}\n")  # fmt: skip

    from_file = load_settings({"config": path}, environ={})
    from_env = load_settings(
        {"config": path}, environ={"AGENTLEDGER_OTLP_HTTP_PORT": "5555", "AGENTLEDGER_HOST": "::1"}
    )
    from_flag = load_settings({"config": path, "otlp_http_port": 6666}, environ={"AGENTLEDGER_OTLP_HTTP_PORT": "5555"})

    assert from_file.collector.receiver.protocols.http.endpoint == "10.0.0.1:1111"  # type: ignore[union-attr]
    assert from_env.collector.receiver.protocols.http.endpoint == "::1:5555"  # type: ignore[union-attr]
    assert from_env.collector.receiver.protocols.grpc.endpoint == "::1:2222"  # type: ignore[union-attr]
    assert from_env.api.endpoint == "::1:3333"
    assert from_flag.collector.receiver.protocols.http.endpoint == "10.0.0.1:6666"  # type: ignore[union-attr]


def test_grpc_can_be_disabled_in_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "receivers:\n  otlp:\n    protocols:\n      http: {}\n      grpc: null\n")

    settings = load_settings({"config": path, "otlp_grpc_port": 9999}, environ={})

    assert settings.collector.receiver.protocols.grpc is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("receiverz: {}\n", "unknown top-level key(s) receiverz"),
        ("receivers:\n  otlp:\n    limits: {max_spans_per_request: 0}\n",
         "receivers.otlp.limits.max_spans_per_request: Input should be greater than or equal to 1"),
        ("receivers:\n  otlp:\n    protocols: {http: {endpoint: nowhere}}\n", "receivers.otlp.protocols.http.endpoint"),
        ("receivers:\n  otlp:\n    colour: blue\n", "receivers.otlp.colour: Extra inputs are not permitted"),
        ("receivers:\n  kafka: {}\n", "receivers.kafka: unknown receiver type 'kafka'"),
        ("processors:\n  magic: {}\n", "processors.magic: unknown processor type 'magic'"),
        ("exporters:\n  s3: {}\n", "exporters.s3: unknown exporter type 's3'"),
        ("service:\n  pipelines:\n    traces:\n      exporters: [clickhouse/2]\n",
         "service.pipelines.traces.exporters names 'clickhouse/2', which is not defined under `exporters:`"),
        ("spool: {fsync: sometimes}\n", "spool.fsync: Input should be 'always', 'interval' or 'never'"),
        ("storage: {database: 'bad name'}\n", "storage.database: String should match pattern"),
        ("- a list\n", "must hold a mapping at the top"),
        ("receivers: [\n", "is not valid YAML"),
    ],
)  # fmt: skip
def test_bad_config_fails_with_a_sentence_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"config": _write(tmp_path, text)}, environ={})

    assert message in str(error.value)


def test_auth_enabled_without_credentials_fails_at_startup(tmp_path: Path) -> None:
    from agentledger.collector.auth import Authenticator

    settings = load_settings({"config": _write(tmp_path, "receivers:\n  otlp:\n    auth: {enabled: true}\n")},
                             environ={})  # fmt: skip

    with pytest.raises(ConfigError) as error:
        Authenticator(settings.collector.receiver.auth, "default")

    assert str(error.value) == "receivers.otlp.auth.credentials_file is required when auth.enabled is true"


def test_a_missing_config_file_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"config": tmp_path / "nope.yaml"}, environ={})

    assert str(error.value) == f"cannot read config file {tmp_path / 'nope.yaml'}: No such file or directory"


def test_metrics_pricing_and_ceilings_are_read_from_the_api_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "api:\n  metrics:\n    pricing:\n"
                            "      gpt-a: {input_per_million: 0.4, output_per_million: 1.6}\n"
                            "    review_cost_per_hour: 60\n"
                            "    blast_radius: {ceilings: {'*': {money_moved: 500}}}\n")  # fmt: skip

    metrics = load_settings({"config": path}, environ={}).api.metrics

    assert metrics.price_arrays() == (["gpt-a"], [0.4], [1.6])
    assert metrics.review_cost_per_hour == 60.0
    ceiling = metrics.blast_radius.ceiling_for("any-agent")
    assert ceiling is not None and ceiling.money_moved == 500.0


def test_a_negative_price_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "api:\n  metrics:\n    pricing:\n      gpt-a: {input_per_million: -1, output_per_million: 1}\n"
    )

    with pytest.raises(ConfigError, match=r"^api\.metrics\.pricing\.gpt-a\.input_per_million: "):
        load_settings({"config": path}, environ={})


def test_storage_cluster_is_read_from_the_file_and_overridden_by_environment_and_flag(tmp_path: Path) -> None:
    from agentledger.ingest.cluster_ddl import DdlShape
    from agentledger.settings import ENV_CLICKHOUSE_CLUSTER

    config = _write(tmp_path, "storage: {dsn: 'http://ch:8123', database: ledger, cluster: from_file}\n")

    from_file = load_settings({"config": config}, environ={})
    from_env = load_settings({"config": config}, environ={ENV_CLICKHOUSE_CLUSTER: "from-env"})
    from_flag = load_settings({"config": config, "cluster": "flag"}, environ={ENV_CLICKHOUSE_CLUSTER: "from-env"})

    assert (from_file.cluster, from_env.cluster, from_flag.cluster) == ("from_file", "from-env", "flag")
    assert from_file.ddl_shape == DdlShape("ledger", "from_file")
    assert load_settings({}, environ={}).ddl_shape == DdlShape("agentledger", None)


def test_a_bad_cluster_name_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"config": _write(tmp_path, "storage: {cluster: 'two words'}\n")}, environ={})

    assert str(error.value).startswith("storage.cluster: ")
    assert "must be a cluster name from remote_servers (letters, digits, _ and -), not 'two words'" in str(error.value)


def test_the_collector_id_variable_names_every_clickhouse_exporters_log(tmp_path: Path) -> None:
    from agentledger.collector.config import ClickHouseExporterConfig
    from agentledger.settings import ENV_COLLECTOR_ID

    config = _write(tmp_path, "exporters:\n  clickhouse: {collector_id: from-file, batch_max_spans: 500}\n")

    loaded = load_settings({"config": config}, environ={ENV_COLLECTOR_ID: "collector-7"})
    default = load_settings({}, environ={ENV_COLLECTOR_ID: "collector-8"})

    exporter, default_exporter = loaded.collector.exporters["clickhouse"], default.collector.exporters["clickhouse"]
    assert isinstance(exporter, ClickHouseExporterConfig) and isinstance(default_exporter, ClickHouseExporterConfig)
    assert (exporter.collector_id, exporter.batch_max_spans) == ("collector-7", 500)
    assert default_exporter.collector_id == "collector-8"
    with pytest.raises(ConfigError) as error:
        load_settings({}, environ={ENV_COLLECTOR_ID: "no/slashes"})
    assert str(error.value).startswith("exporters.clickhouse.collector_id: ")


def test_embedded_chdb_server_settings_have_bounded_defaults_and_are_read_from_the_file(tmp_path: Path) -> None:
    defaults = load_settings({}, environ={})
    config = _write(tmp_path, "storage: {embedded: {max_server_memory_usage: 536870912, mark_cache_size: 1048576}}\n")
    from_file = load_settings({"config": config}, environ={})

    assert defaults.embedded.server_settings() == {
        "mark_cache_size": "67108864", "index_mark_cache_size": "16777216", "primary_index_cache_size": "67108864",
        "uncompressed_cache_size": "0", "query_condition_cache_size": "16777216", "background_pool_size": "2",
    }  # fmt: skip
    assert from_file.embedded.server_settings()["max_server_memory_usage"] == "536870912"
    assert from_file.embedded.server_settings()["mark_cache_size"] == "1048576"
    # Process settings, not chDB start-up options (ingest/embedded_memory.py applies them).
    assert (defaults.embedded.allocator_dirty_decay_ms, defaults.embedded.release_library_pages) == (0, True)
    assert defaults.embedded.release_library_pages_interval_s == 2.0
    example = load_settings({"config": REPO_ROOT / "agentledger.example.yaml"}, environ={})
    assert example.embedded == defaults.embedded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage: {embedded: {mark_cache_size: -1}}\n", "storage.embedded.mark_cache_size: "),
        ("storage: {embedded: {background_pool_size: 0}}\n", "storage.embedded.background_pool_size: "),
        ("storage: {embedded: {max_memory: 1}}\n", "storage.embedded.max_memory: Extra inputs are not permitted"),
        ("storage: {embedded: {allocator_dirty_decay_ms: -1}}\n", "storage.embedded.allocator_dirty_decay_ms: "),
        ("storage: {embedded: {release_library_pages: maybe}}\n", "storage.embedded.release_library_pages: "),
        (
            "storage: {embedded: {release_library_pages_interval_s: -1}}\n",
            "storage.embedded.release_library_pages_interval_s: ",
        ),
    ],
)
def test_a_bad_embedded_setting_fails_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"config": _write(tmp_path, text)}, environ={})

    assert str(error.value).startswith(message), str(error.value)


def test_embedded_settings_reach_the_chdb_engine(tmp_path: Path) -> None:
    """In a subprocess: chDB allows one engine folder per process, and the test process has its own."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from agentledger.ingest.clickhouse import chdb_dsn, connect\n"
        "client = connect(chdb_dsn(__import__('pathlib').Path(sys.argv[1])), 'agentledger', None,\n"
        "                 {'mark_cache_size': '3145728', 'max_server_memory_usage': '805306368'})\n"
        'rows = client.query("SELECT name, value FROM system.server_settings WHERE name IN"\n'
        "                    \" ('mark_cache_size', 'max_server_memory_usage') ORDER BY name\").result_rows\n"
        "print(rows)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "chdb")], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('mark_cache_size', '3145728'), ('max_server_memory_usage', '805306368')]"
