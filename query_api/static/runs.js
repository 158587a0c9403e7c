// The landing view: recent runs with their outcome, findings, writes, cost and duration; filters mapped to
// GET /v1/runs's query parameters, kept in the page's address; older runs by the API's cursor.
import { $, api, badge, detailText, el, fmtAbsolute, fmtAgo, fmtCost, fmtDuration, fmtInt, navigate, pageLink, runHref, severityRank, status } from "./common.js";

const PAGE_SIZE = 25;
const RANGES = { "": "any time", "1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days" };
const RANGE_MS = { "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000 };
// Filter name in the page's address -> label; each maps to the API parameter of the same name, except
// range (-> since) and findings (-> has_violations).
const TEXT_FILTERS = [["agent", "agent"], ["workflow", "workflow"], ["rule", "rule"], ["tool", "tool"], ["target", "target"]];

function select(name, label, options, value) {
  return el("label", {}, label, el("select", { name, id: "f-" + name },
    Object.entries(options).map(([v, text]) => el("option", { value: v, selected: v === value }, text))));
}

function apiQuery(params) {
  // The API audits the page's runs together (with_findings), so each row comes with its findings; a row
  // without them (an older API) is filled in from its run's audit after the list shows.
  const limit = /^[1-9][0-9]?$|^1[0-9]{2}$|^200$/.test(params.get("limit") || "") ? params.get("limit") : String(PAGE_SIZE);
  const query = new URLSearchParams({ limit, with_findings: "true" });
  for (const [name] of TEXT_FILTERS) if (params.get(name)) query.set(name, params.get(name));
  if (params.get("outcome")) query.set("outcome", params.get("outcome"));
  if (params.get("findings") === "yes") query.set("has_violations", "true");
  if (params.get("findings") === "no") query.set("has_violations", "false");
  const range = RANGE_MS[params.get("range") || ""];
  if (range) query.set("since", new Date(Date.now() - range).toISOString());
  return query;
}

export function renderRuns(params) {
  const form = el("form", { id: "filters", "aria-label": "filter runs" },
    select("range", "time", RANGES, params.get("range") || ""),
    ...TEXT_FILTERS.map(([name, label]) => el("label", {}, label, el("input", { name, id: "f-" + name, value: params.get(name) || "", autocomplete: "off" }))),
    select("outcome", "outcome", { "": "any", success: "success", failure: "failure", escalated: "escalated", cancelled: "cancelled" }, params.get("outcome") || ""),
    select("findings", "findings", { "": "any", yes: "has findings", no: "no findings" }, params.get("findings") || ""),
    el("button", { type: "submit" }, "Filter"),
    el("button", { type: "button", class: "quiet", id: "f-clear" }, "Clear"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    if (params.get("limit")) next.set("limit", params.get("limit"));
    navigate("/ui" + (next.toString() ? "?" + next : ""));
  });
  form.querySelector("#f-clear").addEventListener("click", () => navigate("/ui"));
  const body = el("tbody", { id: "runs-body" });
  const table = el("table", { id: "runs" }, el("caption", { class: "sr" }, "Recent runs, newest first"),
    el("thead", {}, el("tr", {}, ...[["started"], ["run"], ["agent"], ["workflow"], ["outcome"], ["findings"],
      ["writes", "num"], ["cost", "num"], ["duration", "num"]].map(([h, cls]) => el("th", { scope: "col", class: cls }, h)))), body);
  const pager = el("div", { class: "pager" });
  $("out").append(el("section", { class: "panel", "aria-labelledby": "runs-h" }, el("h2", { id: "runs-h" }, "Recent runs"), form),
    el("section", { class: "panel" }, table, pager));
  load(apiQuery(params), body, pager);
}

async function load(query, body, pager, cursor) {
  status("Loading runs…");
  const q = new URLSearchParams(query);
  if (cursor) q.set("cursor", cursor);
  const r = await api("/v1/runs?" + q);
  if (r.status !== 200) { status(detailText(r.body, "listing runs failed (" + r.status + ")"), true); return; }
  status("");
  const pending = [];
  for (const run of r.body.runs) {
    const row = runRow(run);
    body.append(row);
    if (run.findings == null) pending.push([run.run_id, row.querySelector("td.findings")]);
  }
  fillFindings(pending);
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No runs match these filters.")));
  pager.replaceChildren(el("span", { class: "muted", id: "runs-count" }, body.querySelectorAll("tr.run").length + " runs shown"));
  if (r.body.next_cursor) {
    const more = el("button", { type: "button", class: "quiet", id: "more" }, "Older runs");
    more.addEventListener("click", () => load(query, body, pager, r.body.next_cursor));
    pager.append(more);
  }
}

function findingsCell(count, severity) {
  return count == null ? el("span", { class: "muted" }, "…")
    : count === 0 ? el("span", { class: "clean" }, "none")
    : el("span", {}, badge(severity || "finding", severity), " " + count);
}

async function fillFindings(pending) {
  const worker = async () => {
    while (pending.length) {
      const [runId, cell] = pending.shift();
      const r = await api("/v1/runs/" + encodeURIComponent(runId) + "/audit");
      if (r.status !== 200) { cell.replaceChildren(el("span", { class: "muted" }, "?")); continue; }
      const severities = r.body.findings.map((f) => f.severity).sort((a, b) => severityRank(a) - severityRank(b));
      cell.replaceChildren(findingsCell(r.body.findings.length, severities[0]));
      cell.dataset.filled = "true";
    }
  };
  await Promise.all([worker(), worker(), worker()]);
}

function runRow(run) {
  const findings = findingsCell(run.findings, run.top_severity);
  return el("tr", { class: "run" },
    el("td", { title: fmtAbsolute(run.first_start) }, fmtAgo(run.first_start)),
    el("td", {}, pageLink(runHref(run.run_id), run.run_id, "mono")),
    el("td", {}, run.agent_name || run.agent_id || "—"),
    el("td", {}, run.workflow || "—"),
    el("td", {}, run.outcome ? badge(run.outcome, run.outcome) : el("span", { class: "muted" }, "—")),
    el("td", { class: "findings", "data-filled": run.findings == null ? null : "true" }, findings),
    el("td", { class: "num" }, fmtInt(run.writes)),
    el("td", { class: "num", title: fmtInt(run.input_tokens) + " in / " + fmtInt(run.output_tokens) + " out tokens" }, fmtCost(run.cost_usd)),
    el("td", { class: "num" }, fmtDuration(run.duration_ms)));
}
