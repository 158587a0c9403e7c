"""What the responder's runs list and incident view read from the API: the runs listing's workflow, target
and rule filters, its findings, writes, tokens, cost and duration columns; the timeline's token and cost
totals; the report's link to the page; the page's field lists from the registry."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.metrics_config import MetricsConfig, ModelPrice
from agentledger.schema import conventions as conv
from agentledger.schema.presentation import PAGE_FIELDS, PAGE_SUMMARY
from tests.query_api.incidents import PrRun, github_pull_request, ingest, jira_issue, pr_run_spans
from tests.query_api.seed import SECOND, T0, Child, Run, prompt, seed_runs

PRICES = MetricsConfig(pricing={"gpt-4.1": ModelPrice(input_per_million=2.0, output_per_million=8.0)})


@pytest.fixture
def priced_api(client: Client) -> TestClient:
    return TestClient(create_app(client, QueryApiConfig(tenant="default", metrics=PRICES)))


@pytest.fixture
def runs(client: Client, priced_api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_pr_ok")))
    ingest(client, pr_run_spans(PrRun("run_pr_unapproved", approve_pr=False)))
    priced_api.post(
        "/v1/hooks/github", json=github_pull_request("run_pr_ok"), headers={"X-GitHub-Event": "pull_request"}
    )
    priced_api.post("/v1/hooks/jira", json=jira_issue("run_pr_ok"))
    seed_runs(
        client,
        [
            Run("run_recon", "recon-1", T0 + 3_600 * SECOND, 20 * SECOND, outcome="failure", workflow="reconcile",
                children=[prompt(1, "gpt-4.1", 100_000, 2_000), prompt(5, "gpt-4.1", 50_000, 1_000),
                          prompt(9, "unpriced-model", 10, 10),
                          Child("tool_call", 12 * SECOND, SECOND, {conv.AGENTLEDGER_TOOL_COST: 0.25})]),
        ],
    )  # fmt: skip


def _listed(api: TestClient, **params: str | int) -> list[dict[str, object]]:
    response = api.get("/v1/runs", params=params)
    assert response.status_code == 200, response.text
    runs: list[dict[str, object]] = response.json()["runs"]
    return runs


def test_each_listed_run_has_its_workflow_writes_tokens_cost_and_duration(runs: None, priced_api: TestClient) -> None:
    columns = ("run_id", "workflow", "writes", "input_tokens", "output_tokens", "cost_usd", "duration_ms", "findings")

    listed = [tuple(run[c] for c in columns) for run in _listed(priced_api)]

    # 150k input and 3k output tokens at 2 and 8 USD per million, plus the tool's 0.25 USD.
    assert listed == [
        ("run_recon", "reconcile", 0, 150_010, 3_010, pytest.approx(0.3 + 0.024 + 0.25), 20_000.0, None),
        ("run_pr_unapproved", "", 0, 0, 0, 0.0, 70_000.0, None),
        ("run_pr_ok", "", 2, 0, 0, 0.0, 70_000.0, None),
    ]


def test_a_redelivered_write_is_counted_once_in_the_listing(runs: None, client: Client, priced_api: TestClient) -> None:
    # The same webhook delivered again stores a second copy of the write until merges collapse it.
    redelivered = priced_api.post(
        "/v1/hooks/github", json=github_pull_request("run_pr_ok"), headers={"X-GitHub-Event": "pull_request"}
    )
    assert redelivered.status_code < 300, redelivered.text
    stored = client.command("SELECT count() FROM writes WHERE run_id = 'run_pr_ok'")
    assert int(stored) == 3  # the pull request twice and the Jira issue: the copy is there to be counted once

    listed = {run["run_id"]: run["writes"] for run in _listed(priced_api)}

    assert listed == {"run_recon": 0, "run_pr_unapproved": 0, "run_pr_ok": 2}


def test_with_findings_counts_them_and_names_the_top_severity(runs: None, priced_api: TestClient) -> None:
    listed = _listed(priced_api, with_findings="true")
    audit = priced_api.get("/v1/runs/run_pr_unapproved/audit").json()

    assert len(audit["findings"]) > 1  # the count is the audit's, whichever rules find what
    assert {run["run_id"]: (run["findings"], run["top_severity"]) for run in listed} == {
        "run_recon": (0, None),
        "run_pr_unapproved": (len(audit["findings"]), "high"),
        "run_pr_ok": (0, None),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"workflow": "reconcile"}, ["run_recon"]),
        ({"workflow": "nope"}, []),
        ({"target": "github:acme/shop"}, ["run_pr_unapproved", "run_pr_ok"]),
        ({"target": "jira:project/OPS"}, ["run_pr_unapproved", "run_pr_ok"]),
        ({"target": "jira:project/OPS", "agent": "recon-1"}, []),
        ({"target": "crm:nobody"}, []),
        ({"rule": "missing_approval"}, ["run_pr_unapproved"]),
        ({"rule": "untrusted_influence", "workflow": "reconcile"}, []),
        ({"rule": "no_such_rule"}, []),
    ],
)
def test_filters_by_workflow_target_and_rule(
    runs: None, priced_api: TestClient, params: dict[str, str], expected: list[str]
) -> None:
    listed = _listed(priced_api, **params)

    assert [run["run_id"] for run in listed] == expected
    if "rule" in params:  # a rule filter audits the runs it lists, so their findings are given
        assert all(isinstance(run["findings"], int) and run["findings"] > 0 for run in listed)


def test_timeline_totals_tokens_and_cost_per_run_and_per_model_call(runs: None, priced_api: TestClient) -> None:
    body = priced_api.get("/v1/runs/run_recon/timeline").json()

    assert [(e["name"], e["cost_usd"]) for e in body["entries"] if e["type"] == "prompt"] == [
        ("prompt", pytest.approx(0.216)),
        ("prompt", pytest.approx(0.108)),
        ("prompt", 0.0),
    ]
    assert {e["cost_usd"] for e in body["entries"] if e["type"] != "prompt"} == {None}
    assert body["totals"] == {
        "model_calls": 3,
        "input_tokens": 150_010,
        "output_tokens": 3_010,
        "model_cost_usd": pytest.approx(0.324),
        "tool_cost_usd": 0.25,
        "cost_usd": pytest.approx(0.574),
        "unpriced_models": ["unpriced-model"],
    }


def test_markdown_report_links_to_the_runs_page(runs: None, priced_api: TestClient) -> None:
    report = priced_api.get("/v1/runs/run_pr_ok/timeline", params={"format": "md"}).text

    # Plain text, not a Markdown link (the report holds none): GitHub and most viewers make it clickable.
    assert report.splitlines()[2] == "Open the run: http://testserver/ui?run=run_pr_ok"


def test_the_page_field_lists_are_the_registrys(priced_api: TestClient) -> None:
    body = priced_api.get("/ui/presentation.json").json()

    assert body["fields"]["prompt"][7:10] == [
        {"name": "system_instructions", "render": "messages"},
        {"name": "input_messages", "render": "messages"},
        {"name": "output_messages", "render": "messages"},
    ]
    assert {t: [(f["name"], f["render"]) for f in fields] for t, fields in body["fields"].items()} == {
        t: [tuple(pair) for pair in pairs] for t, pairs in PAGE_FIELDS.items()
    }
    assert body["summary"] == {t: list(names) for t, names in PAGE_SUMMARY.items()}
