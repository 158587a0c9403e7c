// The responder page's entry point: which view the address asks for (runs list, a run, a search), and
// the search box. Every view reads the JSON API with the key the responder entered.
import { $, api, badge, detailText, el, fmtAbsolute, pageLink, runHref, status } from "./common.js";
import { renderIncident } from "./incident.js";
import { renderRuns } from "./runs.js";

let presentation = null;

async function fields() {
  if (!presentation) {
    const response = await fetch("/ui/presentation.json");
    presentation = response.ok ? await response.json() : { fields: {}, summary: {} };
  }
  return presentation;
}

async function route() {
  $("out").replaceChildren();
  status("");
  const params = new URLSearchParams(location.search);
  document.title = "agentledger · responder";
  if (params.get("run") != null) { $("q").value = params.get("run"); return showRun(params.get("run")); }
  if (params.get("q")) { $("q").value = params.get("q"); $("kind").value = params.get("kind") || "auto"; return search(params.get("q"), $("kind").value); }
  $("q").value = "";
  renderRuns(params);
}

async function showRun(runId) {
  status("Loading run…");
  const r = await renderIncident(runId, await fields());
  if (r.status === 200) status(""); else status(detailText(r.body, "run not found"), true);
}

async function search(q, kind) {
  status("Searching…");
  if (kind === "auto" || kind === "run") {
    const r = await renderIncident(q, await fields());
    if (r.status === 200) { status(""); return; }
    if (r.status === 401 || r.status === 403) return status(detailText(r.body, "not allowed"), true);
    if (kind === "run") return status(detailText(r.body, "run not found"), true);
  }
  if (kind === "auto" || kind === "ref") {
    const r = await api("/v1/writes?" + new URLSearchParams({ ref: q }));
    if (r.status === 200 && r.body.matches.length) { status(""); return renderLookup(r.body); }
    if (r.status !== 200) return status(detailText(r.body, "lookup failed"), true);
    if (kind === "ref") return status("No run wrote " + q, true);
  }
  // Every character encoded, `/` too: a target holding `..` must not be resolved away by the browser.
  const r = await api("/v1/targets/" + encodeURIComponent(q));
  if (r.status === 200 && r.body.touches.length) { status(""); return renderTarget(r.body); }
  status(r.status === 200 ? "Nothing found for " + q : detailText(r.body, "search failed"), true);
}

function table(caption, headers, rows) {
  return el("section", { class: "panel" }, el("h2", {}, caption),
    el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)));
}

function renderLookup(body) {
  $("out").append(table("Runs that wrote " + body.ref, ["run", "time", "write", "tool call"], body.matches.map((m) => el("tr", {},
    el("td", {}, pageLink(runHref(m.write.run_id), m.write.run_id, "mono")),
    el("td", { class: "mono" }, fmtAbsolute(m.write.occurred_at)),
    el("td", {}, m.write.system + " " + m.write.action),
    el("td", {}, m.tool_call ? [el("span", { class: "mono" }, m.tool_call.name), " ", badge(m.tool_call.link)] : badge("unaccounted", "check"))))));
}

function renderTarget(body) {
  $("out").append(table("Runs that touched " + body.target, ["run", "time", "how", "span / write", "ref"], body.touches.map((t) => el("tr", {},
    el("td", {}, pageLink(runHref(t.run_id), t.run_id, "mono")), el("td", { class: "mono" }, fmtAbsolute(t.time)),
    el("td", {}, badge(t.kind)), el("td", { class: "mono" }, t.name), el("td", { class: "mono" }, t.write_ref || t.tool_call_id)))));
}

$("key").value = sessionStorage.getItem("agentledger.key") || "";
$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (!q) { history.pushState(null, "", "/ui"); route(); return; }
  history.pushState(null, "", "/ui?" + new URLSearchParams({ q, kind: $("kind").value }));
  route();
});
$("home").addEventListener("click", (e) => { e.preventDefault(); history.pushState(null, "", "/ui"); route(); });
window.addEventListener("popstate", route);
window.addEventListener("agentledger:navigate", route);
route();
