"""Every Grafana panel's SQL runs against chDB with seeded data (macros and template variables expanded
as the ClickHouse plugin does), so a schema change that breaks a panel fails here; and docker-compose
provisions these files against the provisioned data source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from tests.dashboards.grafana_macros import GrafanaRange, UnknownMacro, expand
from tests.query_api.seed import HOUR, SECOND, T0, Run, Write, seed_runs, seed_writes, write_call
from tests.query_api.test_metrics import FLEET, WRITES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
DATASOURCE_UID = "agentledger-clickhouse"
RANGE = GrafanaRange(from_s=T0 // SECOND, to_s=(T0 + HOUR) // SECOND, interval_s=60)
VARIABLES = {"tenant": "default", "agent": "refund-agent"}
# Panels with nothing to show on the seeded data (the seed has no truncated span).
EMPTY_ON_SEED = {("audit-findings", "Truncated by the collector")}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


PANELS = [
    pytest.param(name, panel, id=f"{name}:{panel['title']}")
    for name, dashboard in _dashboards().items()
    for panel in _panels(dashboard)
]


@pytest.fixture
def seeded(client: Client) -> Client:
    seed_runs(client, FLEET)
    seed_writes(client, WRITES)
    return client


def _run(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(expand(sql, RANGE, VARIABLES)).result_rows]


def test_the_three_dashboards_exist_with_unique_uids() -> None:
    dashboards = _dashboards()
    assert sorted(dashboards) == ["agent", "audit-findings", "fleet-overview"]
    assert len({dashboard["uid"] for dashboard in dashboards.values()}) == 3
    for dashboard in dashboards.values():
        titles = [panel["title"] for panel in _panels(dashboard)]
        assert len(titles) == len(set(titles)), f"{dashboard['title']}: panel titles must be unique"


@pytest.mark.parametrize(("dashboard", "panel"), PANELS)
def test_every_panel_query_runs_on_the_real_schema(seeded: Client, dashboard: str, panel: dict[str, Any]) -> None:
    assert panel["datasource"]["uid"] == DATASOURCE_UID
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == DATASOURCE_UID
        rows = _run(seeded, target["rawSql"])
        if (dashboard, panel["title"]) in EMPTY_ON_SEED:
            assert rows == []
        else:
            assert rows, f"{dashboard}: {panel['title']} returned nothing on the seeded data"


def test_template_variables_list_the_seeded_tenant_and_agents(seeded: Client) -> None:
    queries = {
        (name, variable["name"]): variable["query"]
        for name, dashboard in _dashboards().items()
        for variable in dashboard["templating"]["list"]
    }
    assert {key: _run(seeded, sql) for key, sql in queries.items()} == {
        ("agent", "tenant"): [("default",)],
        ("agent", "agent"): [("coder",), ("refund-agent",)],
        ("audit-findings", "tenant"): [("default",)],
        ("fleet-overview", "tenant"): [("default",)],
    }


def _panel_sql(dashboard: str, title: str) -> str:
    [panel] = [panel for panel in _panels(_dashboards()[dashboard]) if panel["title"] == title]
    return str(panel["targets"][0]["rawSql"])


def test_panels_show_the_exact_seeded_figures(seeded: Client) -> None:
    # r1..r5 start in the range (r0 an hour before): 2 report success, 2 escalated
    assert _run(seeded, _panel_sql("fleet-overview", "Success rate")) == [(0.4,)]
    assert _run(seeded, _panel_sql("fleet-overview", "Escalation rate")) == [(0.4,)]
    assert _run(seeded, _panel_sql("fleet-overview", "Run latency p50 / p95")) == [(6.0, 10.0)]
    assert _run(seeded, _panel_sql("fleet-overview", "Policy violations by rule")) == [
        ("git.merge", "no-merge-without-review", "block", 1),
        ("refunds.max-amount", "amount-over-100", "review", 1),
    ]
    targets = _run(seeded, _panel_sql("agent", "Targets touched"))
    assert [row[:3] for row in targets] == [("crm:C-1", 1, 50.0), ("crm:C-2", 1, 30.0)]
    assert _run(seeded, _panel_sql("agent", "Downstream writes by system")) == [("stripe", "create", 2)]
    assert _run(seeded, _panel_sql("agent", "Escalation reasons")) == [("unspecified", 1)]
    # the seed's writes carry no tool call id: all five are unaccounted for
    assert len(_run(seeded, _panel_sql("audit-findings", "Writes no tool call accounts for"))) == 5
    assert _run(seeded, _panel_sql("audit-findings", "Refused approvals")) == [(1,)]


def test_panels_credit_activity_to_the_authenticated_agent_not_the_claimed_one(seeded: Client) -> None:
    # Sent with mallory's token, claiming refund-agent: 3 write calls and a downstream write.
    forged = Run("m1", "refund-agent", T0 + 600 * SECOND, 5 * SECOND, "success",
                 children=[write_call(index, f"crm:M-{index}", 1.0) for index in range(1, 4)])  # fmt: skip
    seed_runs(seeded, [forged], verified_agent="mallory")
    seed_writes(seeded, [Write("m1", "stripe", "re_m", "crm:M-1", T0 + 601 * SECOND)])

    agents = {row[0]: row for row in _run(seeded, _panel_sql("fleet-overview", "Agents"))}
    targets = _run(seeded, _panel_sql("agent", "Targets touched"))

    assert sorted(agents) == ["coder", "mallory", "refund-agent"]
    assert agents["mallory"][1:5] == (1, 1, 0, 3)  # runs, successes, escalations, write tool calls
    assert [row[:3] for row in targets] == [("crm:C-1", 1, 50.0), ("crm:C-2", 1, 30.0)]
    assert _run(seeded, _panel_sql("agent", "Downstream writes by system")) == [("stripe", "create", 2)]
    [variable] = [v for v in _dashboards()["agent"]["templating"]["list"] if v["name"] == "agent"]
    assert _run(seeded, str(variable["query"])) == [("coder",), ("mallory",), ("refund-agent",)]


def test_a_schema_change_that_breaks_a_panel_fails(seeded: Client) -> None:
    seeded.command("ALTER TABLE writes RENAME COLUMN action TO write_action")
    with pytest.raises(ClickHouseError, match="action"):
        _run(seeded, _panel_sql("agent", "Downstream writes by system"))


def test_an_unknown_macro_is_not_silently_passed_through() -> None:
    with pytest.raises(UnknownMacro, match=r"\$__timeFilter_ms"):
        expand("SELECT 1 WHERE $__timeFilter_ms(t)", RANGE, VARIABLES)


def test_docker_compose_provisions_these_dashboards_for_the_provisioned_data_source() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    provider = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "agentledger.yaml").read_text())
    datasource = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, _, rest = volume.partition(":")
        mounts[rest.split(":")[0]] = source
    dashboards_path = provider["providers"][0]["options"]["path"]

    assert (ROOT / mounts[dashboards_path]).resolve() == DASHBOARDS
    assert [source["uid"] for source in datasource["datasources"]] == [DATASOURCE_UID]
    assert "grafana-clickhouse-datasource" in compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
