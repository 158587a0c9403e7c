"""`agentledger runs` and `agentledger timeline` against a real query API: the runs list with filters and
each run's page, and a timeline that states its findings and the record's integrity with the API's counts."""

from __future__ import annotations

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from agentledger.cli import EXIT_FAILED, EXIT_OK, main
from agentledger.schema.run_ids import run_page_url
from tests.query_api.incidents import PrRun, github_pull_request, ingest, jira_issue, pr_run_spans


def _cli(capsys: pytest.CaptureFixture[str], served_api: httpx.Client, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--api-url", str(served_api.base_url).rstrip("/")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def two_runs(client: Client, served_api: httpx.Client) -> None:
    ingest(client, pr_run_spans(PrRun("run_ok")))
    ingest(
        client,
        pr_run_spans(
            PrRun("run_unapproved", approve_pr=False),
        ),
    )
    github = {"X-GitHub-Event": "pull_request"}
    for run_id in ("run_ok", "run_unapproved"):
        assert served_api.post("/v1/hooks/github", json=github_pull_request(run_id), headers=github).status_code == 202
        assert served_api.post("/v1/hooks/jira", json=jira_issue(run_id)).status_code == 202


def test_runs_lists_each_run_with_findings_writes_and_its_page(
    two_runs: None, served_api: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    base = str(served_api.base_url).rstrip("/")
    audit = served_api.get("/v1/runs/run_unapproved/audit").json()

    code, out, err = _cli(capsys, served_api, "runs")

    assert (code, err) == (EXIT_OK, "")
    lines = out.splitlines()
    assert lines[0].split() == ["started", "run", "agent", "outcome", "findings", "writes", "cost", "duration", "page"]
    assert [line.split() for line in lines[1:]] == [
        ["2026-11-20T10:00:00.000Z", "run_unapproved", "pr-agent", "success", str(len(audit["findings"])), "high",
         "2", "$0.00", "70.000s", run_page_url(base, "run_unapproved")],
        ["2026-11-20T10:00:00.000Z", "run_ok", "pr-agent", "success", "none", "2", "$0.00", "70.000s",
         run_page_url(base, "run_ok")],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--has-findings",), ["run_unapproved"]),
        (("--no-findings",), ["run_ok"]),
        (("--rule", "missing_approval"), ["run_unapproved"]),
        (("--target", "github:acme/shop", "--agent", "pr-agent"), ["run_unapproved", "run_ok"]),
        (("--workflow", "nothing-like-it"), []),
    ],
)
def test_runs_filters_are_the_apis(
    two_runs: None, served_api: httpx.Client, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
    expected: list[str],
) -> None:  # fmt: skip
    code, out, _ = _cli(capsys, served_api, "runs", *args)

    assert code == EXIT_OK
    rows = out.splitlines()[1:]
    assert [row.split()[1] for row in rows] == expected if expected else rows == ["(no runs match)"]


def test_runs_pages_with_the_cursor_it_prints(
    two_runs: None, served_api: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _cli(capsys, served_api, "runs", "--limit", "1")[1].splitlines()
    assert first[-1].startswith("more: agentledger runs --cursor ")
    cursor = first[-1].split()[4]

    second = _cli(capsys, served_api, "runs", "--limit", "1", "--cursor", cursor)[1].splitlines()

    assert [first[1].split()[1], second[1].split()[1]] == ["run_unapproved", "run_ok"]
    assert len(second) == 2  # the last page offers no cursor


def test_a_bad_filter_is_the_apis_sentence_and_exit_1(
    served_api: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, served_api, "runs", "--since", "yesterday")

    assert (code, out) == (EXIT_FAILED, "")
    assert err.startswith("agentledger runs: the query API answered 400: since: ")


def test_timeline_states_findings_and_integrity_with_the_apis_counts(
    two_runs: None, served_api: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    api = served_api.get("/v1/runs/run_unapproved/timeline", params={"verify": "true"}).json()
    base = str(served_api.base_url).rstrip("/")

    code, out, _ = _cli(capsys, served_api, "timeline", "run_unapproved")

    assert code == EXIT_OK
    lines = out.splitlines()
    blank = lines.index("")
    # 9 spans and 2 writes: the span count is the API's, not the number of entries (11).
    assert (api["run"]["span_count"], len(api["writes"]), len(api["entries"])) == (9, 2, 11)
    assert lines[0] == "run run_unapproved  agent pr-agent  outcome success  traces 2  spans 9  writes 2"
    assert lines[1] == f"page {run_page_url(base, 'run_unapproved')}"
    assert lines[2] == "integrity intact (1 links, 9 spans checked)"
    findings = api["audit"]["findings"]
    assert lines[3] == f"findings {len(findings)}"
    assert sorted(lines[4:blank]) == sorted(
        f"  [{f['severity']}] {f['check']}: {f['message']}" + (f" (span {f['span_id']})" if f["span_id"] else "")
        for f in findings
    )
    assert len(lines) - blank - 1 == len(api["entries"])
    assert lines[blank + 1].startswith("2026-11-20T10:00:00.000Z  run ")
