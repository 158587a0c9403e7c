"""The responder page in real headless Chromium (Debian's `chromium`, driven by Playwright) against a real
`agentledger up`: search by run id, write reference and target; findings, approvals, provenance, redaction.
Saves test-artifacts/responder-incident.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from playwright.sync_api import Browser, Page, expect

from agentledger.schema import conventions as conv
from tests.conftest import RunningService, wait_for_timeline
from tests.query_api.browser import launched_chromium, screenshot_path
from tests.query_api.incidents import (
    PR_URL,
    PrRun,
    github_pull_request,
    jira_issue,
    pr_run_spans,
    record,
    span_id_of,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def incident(service: RunningService) -> dict[str, str]:
    """An unapproved PR shaped by untrusted ticket text, plus a write nothing accounts for."""
    spans = pr_run_spans(PrRun("run_incident", approve_pr=False))
    response = httpx.post(
        f"{service.collector_url}/v1/traces",
        content=encode_spans(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    api = service.api_url
    github = {"X-GitHub-Event": "pull_request"}
    httpx.post(f"{api}/v1/hooks/github", json=github_pull_request("run_incident"), headers=github)
    httpx.post(f"{api}/v1/hooks/jira", json=jira_issue("run_incident"))
    stray = {
        "run_id": "run_incident", "system": "stripe", "ref": "stripe:refund/re_3Qstray", "action": "transfer",
        "target": "crm:customer/C-88123", "occurred_at": "2026-11-20T10:01:05Z", "url": "https://dashboard.stripe.com/refunds/re_3Qstray",
    }  # fmt: skip
    assert httpx.post(f"{api}/v1/writes", json={"writes": [stray]}).status_code == 202
    return {"pr_call": span_id_of(spans, "execute_tool create_pull_request")}


def _open(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 1900})
    page.goto(url)
    return page


def test_run_search_shows_the_incident_with_findings_approvals_and_provenance(
    browser: Browser, service: RunningService, incident: dict[str, str]
) -> None:
    page = _open(browser, f"{service.api_url}/ui")
    page.fill("#q", "run_incident")
    page.click("button[type=submit]")

    expect(page.locator("#audit h2")).to_have_text("Audit findings (3)")
    assert page.locator(".finding b").all_inner_texts() == [
        "UNACCOUNTED WRITE", "MISSING APPROVAL", "UNTRUSTED INFLUENCE"
    ]  # fmt: skip
    flagged = page.locator(f"#span-{incident['pr_call']}")
    expect(flagged).to_have_class(re.compile(r"^entry t-tool_call c-tool_call flagged$"))
    assert flagged.locator(".badge.untrusted").all_inner_texts() == ["retrieved"]
    assert page.locator(".entry.t-approval .badge.approved").all_inner_texts() == ["approved"]
    page.click("#expand-all")  # entries are collapsed; their bodies are built when opened
    expect(page.locator(".entry .redacted")).to_have_text(["[EMAIL]"])  # bodies build as entries open
    chains = page.locator(".chain").all_inner_texts()
    assert chains[0].split("\n") == [
        # the policy names no call: the audit links it to the next call and the page says so
        "policy code.change-review: review (inferred)", "→", "call create_pull_request", "→", f"github create {PR_URL}",
        "missing approval", "untrusted influence",
    ]  # fmt: skip
    stray = page.locator(".entry.t-write.flagged")
    expect(stray).to_contain_text("no tool call accounts for this write")
    assert stray.locator("a").get_attribute("href") == "https://dashboard.stripe.com/refunds/re_3Qstray"
    # The record itself verifies against the audit hash chain (the findings are about what the agent did).
    expect(page.locator("#integrity")).to_contain_text("intact Intact: every span recomputes to its chained digest")
    # The page keeps the search in its address, so a link to it can be pasted into the incident channel.
    assert page.url.endswith("/ui?q=run_incident&kind=auto")
    page.screenshot(path=screenshot_path("responder-incident.png"), full_page=True)
    page.close()


def test_search_by_pr_url_then_open_the_run(
    browser: Browser, service: RunningService, incident: dict[str, str]
) -> None:
    page = _open(browser, f"{service.api_url}/ui")
    page.fill("#q", PR_URL)
    page.click("button[type=submit]")

    expect(page.locator("h2")).to_have_text(f"Runs that wrote {PR_URL}")
    assert page.locator("td").all_inner_texts()[3] == "execute_tool create_pull_request write_span"
    page.click("text=run_incident")
    expect(page.locator("#audit h2")).to_have_text("Audit findings (3)")
    page.close()


def test_search_by_target_lists_the_runs(browser: Browser, service: RunningService, incident: dict[str, str]) -> None:
    page = _open(browser, f"{service.api_url}/ui?q=jira:project/OPS&kind=target")

    expect(page.locator("h2")).to_have_text("Runs that touched jira:project/OPS")
    assert [row.split("\t")[2] for row in page.locator("tr").all_inner_texts()[1:]] == ["write", "span"]
    page.close()


def test_unknown_run_says_so(browser: Browser, service: RunningService) -> None:
    page = _open(browser, f"{service.api_url}/ui?q=run_nope&kind=run")

    expect(page.locator("#status")).to_have_text("no run with id 'run_nope'")
    page.close()


def test_reported_text_is_shown_as_text_and_only_web_urls_become_links(
    browser: Browser, service: RunningService, incident: dict[str, str]
) -> None:
    hostile = {
        "run_id": "run_incident", "system": "crm", "ref": "<img src=x onerror=alert(1)>", "action": "update",
        "target": "t", "occurred_at": "2026-11-20T10:01:06Z", "url": "javascript:alert(1)", "title": "<b>bold</b>",
    }  # fmt: skip
    assert httpx.post(f"{service.api_url}/v1/writes", json={"writes": [hostile]}).status_code == 202

    page = _open(browser, f"{service.api_url}/ui?q=run_incident&kind=run")
    entry = page.locator(".entry.t-write").last
    page.click("#expand-all")

    expect(entry.locator(".name")).to_have_text("crm update <img src=x onerror=alert(1)>")
    assert entry.locator("img").count() == 0 and entry.locator("b").count() == 0
    assert entry.locator("a[href^='javascript']").count() == 0
    expect(entry).to_contain_text("javascript:alert(1)")
    page.close()


# Sorts after "pr-agent": the run index keeps the greatest agent name of the run's spans.
HOSTILE_NAME = 'zz <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>\n## heading'


def test_any_run_id_opens_and_hostile_names_stay_text(browser: Browser, service: RunningService) -> None:
    run_ids = ["a/b", "../x", "ü-运行", "with space", "%2F", "line\nbreak", "emoji 🧾", "x/timeline"]
    spans = [span for run_id in run_ids for span in pr_run_spans(PrRun(run_id))]
    hostile_run = record(
        lambda tracer: tracer.start_span(
            HOSTILE_NAME,
            attributes={conv.AGENT_RUN_ID: "a/b", conv.AGENTLEDGER_SPAN_TYPE: "run",
                        conv.GEN_AI_AGENT_NAME: HOSTILE_NAME, conv.AGENTLEDGER_TOOL_TARGET: "crm:a/../b"},
        ).end()
    )  # fmt: skip
    response = httpx.post(
        f"{service.collector_url}/v1/traces",
        content=encode_spans(spans + hostile_run).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    page = _open(browser, f"{service.api_url}/ui")

    for run_id in run_ids:
        page.goto(f"{service.api_url}/ui?" + urlencode({"q": run_id, "kind": "run"}))
        expect(page.locator(".summary .mono").first).to_have_text(run_id, timeout=30_000)
        expect(page.locator("#integrity")).to_contain_text("intact")
    page.goto(f"{service.api_url}/ui?" + urlencode({"q": "a/b", "kind": "run"}))
    expect(page.locator(".summary div").nth(1)).to_have_text("agent" + HOSTILE_NAME.replace("\n", " "))
    assert page.locator("#out img, #out script").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{service.api_url}/ui?" + urlencode({"q": "crm:a/../b", "kind": "target"}))
    expect(page.locator("h2")).to_have_text("Runs that touched crm:a/../b")
    page.close()


def test_each_write_call_has_its_chain_even_when_no_decision_applies_to_it(
    browser: Browser, service: RunningService
) -> None:
    spans = pr_run_spans(PrRun("run_unreviewed", approve_pr=False, approve_ticket=False))
    response = httpx.post(
        f"{service.collector_url}/v1/traces",
        content=encode_spans(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    # The collector acknowledges once the spool holds the spans; storage follows asynchronously.
    wait_for_timeline(service.api_url, "run_unreviewed", len(spans))
    audit = httpx.get(f"{service.api_url}/v1/runs/run_unreviewed/audit").json()
    page = _open(browser, f"{service.api_url}/ui?run=run_unreviewed")
    expect(page.locator("#chains .chain")).to_have_count(2)
    chains = [chain.split("\n") for chain in page.locator("#chains .chain").all_inner_texts()]
    # The audit's chains come first (the review policy it links to the PR call), then each write call no
    # decision applies to, shown as such.
    assert len(audit["approval_chains"]) == 1
    assert chains[0][:3] == ["policy code.change-review: review (inferred)", "→", "call create_pull_request"]
    assert chains[1][:3] == ["no policy or approval", "→", "call update_ticket"]
