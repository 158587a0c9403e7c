// One run's incident view: what went wrong first (findings by severity with their evidence, the approval
// chain of each write, the record's integrity, tokens and cost), then a waterfall of its spans across
// traces, then its entries, collapsed, filterable by type.
import { $, api, badge, detailText, el, fmtAbsolute, fmtCost, fmtDuration, fmtInt, fmtOffset, humanize, severityRank } from "./common.js";
import { provenanceBadges, renderValue } from "./content.js";

const TYPE_ORDER = ["run", "prompt", "retrieval", "tool_call", "approval", "policy_decision", "downstream_write", "write", "span"];

// Returns the API's status: 200 when shown, else the caller decides (a search falls through to refs).
export async function renderIncident(runId, presentation) {
  const r = await api("/v1/runs/" + encodeURIComponent(runId) + "/timeline");
  if (r.status !== 200) return r;
  // Marks for measuring the render (the tests print the figure for a 500-span run).
  performance.mark("agentledger:timeline-received");
  const view = new Incident(r.body, presentation);
  $("out").append(...view.render());
  performance.mark("agentledger:incident-rendered");
  document.title = "run " + r.body.run.run_id + " · agentledger";
  view.renderIntegrity(runId);
  return r;
}

class Incident {
  constructor(t, presentation) {
    this.t = t;
    this.fields = presentation.fields;
    this.summaryFields = presentation.summary;
    const spans = t.entries.filter((e) => e.type !== "write");
    // reduce, not Math.min(...): a spread of a very long run would overflow the call stack.
    this.startNs = t.entries.reduce((m, e) => Math.min(m, e.start_unix_nano), t.entries.length ? Infinity : 0);
    this.endNs = spans.reduce((m, e) => Math.max(m, e.end_unix_nano), this.startNs + 1);
    // A write the agent's own write span names is one event: shown once, on the span, with what the
    // written system reported about it.
    const writeSpans = new Map();
    for (const e of spans) if (e.type === "downstream_write" && e.details.ref) writeSpans.set(e.details.system + " " + e.details.ref, e);
    this.reported = new Map();
    this.entries = [];
    for (const e of t.entries) {
      const span = e.type === "write" ? writeSpans.get(e.details.system + " " + e.details.ref) : null;
      if (span) { if (!this.reported.has(span.span_id)) this.reported.set(span.span_id, []); this.reported.get(span.span_id).push(e); }
      else this.entries.push(e);
    }
    this.nodes = new Map();
  }

  render() {
    return [this.renderSummary(), this.renderFindings(), this.renderChains(), this.renderTotals(), this.renderWaterfall(), this.renderTimeline()];
  }

  renderSummary() {
    const run = this.t.run, audit = this.t.audit, totals = this.t.totals;
    const items = [["run id", run.run_id], ["agent", run.agent_name || run.agent_id], ["outcome", run.outcome || "—"],
      ["autonomy", audit.autonomy_level || "not reported"], ["started", fmtAbsolute(run.first_start)],
      ["duration", fmtDuration((this.endNs - this.startNs) / 1e6)], ["traces", run.trace_ids.length],
      ["spans", run.span_count + " (" + run.error_count + " errors)"], ["writes", this.t.writes.length]];
    if (totals) items.push(["tokens", fmtInt(totals.input_tokens) + " in / " + fmtInt(totals.output_tokens) + " out"], ["cost", fmtCost(totals.cost_usd)]);
    return el("section", { class: "panel", "aria-labelledby": "run-h" }, el("h2", { id: "run-h" }, "Run"),
      el("div", { class: "summary" }, items.map(([k, v]) => el("div", {}, el("b", {}, k), el("span", { class: "mono" }, v)))));
  }

  // What went wrong, most severe first, each with links to its evidence.
  renderFindings() {
    const audit = this.t.audit;
    const findings = [...audit.findings].sort((a, b) => severityRank(a.severity) - severityRank(b.severity));
    const panel = el("section", { class: "panel", id: "audit", "aria-labelledby": "audit-h" }, el("h2", { id: "audit-h" }, "Audit findings (" + findings.length + ")"));
    if (!findings.length) panel.append(el("div", { class: "clean" }, "All checks passed: " + audit.checks.join(", ")));
    for (const f of findings) {
      const title = f.title || humanize(f.rule_id || f.check);
      const item = el("div", { class: "finding " + (f.severity || "") }, badge(f.severity || "finding", f.severity), " ", el("b", {}, title), " ", f.sentence || f.message);
      const evidence = [...new Set([...(f.evidence_span_ids || []), ...(f.span_id ? [f.span_id] : [])])];
      const links = evidence.map((id) => this.focusLink("span " + this.spanLabel(id), { span: id }));
      if (f.write_ref) links.push(this.focusLink("write " + f.write_ref, { write: f.write_ref }));
      if (links.length) item.append(el("div", { class: "evidence" }, "evidence: ", links.flatMap((l, i) => (i ? [", ", l] : [l]))));
      panel.append(item);
    }
    return panel;
  }

  spanLabel(spanId) {
    const e = this.t.entries.find((x) => x.span_id === spanId);
    return e ? e.name : spanId;
  }

  focusLink(text, target) {
    const a = el("a", { href: "#" + (target.span ? "span-" + target.span : "write-" + encodeURIComponent(target.write)) }, text);
    a.addEventListener("click", (e) => { e.preventDefault(); this.focus(target); });
    return a;
  }

  // Whether the stored record is complete and unaltered: the run's audit hash chain, recomputed by the API.
  async renderIntegrity(runId) {
    const panel = el("section", { class: "panel", id: "integrity", "aria-labelledby": "integrity-h" }, el("h2", { id: "integrity-h" }, "Record integrity"));
    $("out").insertBefore(panel, $("totals"));  // after what went wrong and the approval chains
    const r = await api("/v1/runs/" + encodeURIComponent(runId) + "/verify");
    if (r.status !== 200) { panel.append(el("div", { class: "err" }, detailText(r.body, "verification unavailable"))); return; }
    const v = r.body;
    const words = { intact: "Intact: every span recomputes to its chained digest",
                    pruned: "Pruned by policy or deleted on request, otherwise intact",
                    tampered: "TAMPERED: the stored record differs from what the collector chained",
                    unchained: "Not chained (ingested without the audit chain)" };
    panel.append(el("div", { class: v.status === "tampered" ? "finding high" : (v.status === "intact" ? "clean" : "finding medium") },
      el("b", {}, v.status), " " + words[v.status] + " (" + v.links + " links, " + v.spans_checked + " spans" +
      (v.signatures_checked ? ", signatures checked" : "") + ")"));
    for (const b of v.chain_breaks) panel.append(el("div", { class: "finding high" }, el("b", {}, "link " + b.seq), " " + b.problem));
    for (const f of v.findings) {
      const item = el("div", { class: "finding " + (["pruned", "deleted"].includes(f.problem) ? "medium" : "high") },
        el("b", {}, f.problem), " span " + f.span_id + (f.name ? " (" + f.name + ")" : "") +
        (f.link_seq ? ", chained in link " + f.link_seq : "") + (f.at ? ", at " + f.at : "") + (f.note ? " — " + f.note : ""));
      if (f.problem === "altered" || f.problem === "inserted") item.append(" ", this.focusLink("→ span", { span: f.span_id }));
      panel.append(item);
    }
    panel.append(el("div", { class: "muted mono" }, "head " + v.head));
  }

  // For each call the audit reviewed: the policy decisions and approvals that apply to it (the audit's
  // approval_chains: linked by call id, tool name, or inferred as the next call), the call (or that it
  // never ran), and the writes it made.
  renderChains() {
    const t = this.t;
    const panel = el("section", { class: "panel", id: "chains", "aria-labelledby": "chains-h" }, el("h2", { id: "chains-h" }, "Approval chain of each write"));
    const chains = [...((t.audit && t.audit.approval_chains) || [])];
    // A write call no decision applies to still has a chain: an empty one, which is the finding.
    const chained = new Set(chains.map((c) => c.span_id));
    for (const e of t.entries)
      if (e.type === "tool_call" && ["write", "destructive"].includes(e.details.access) && !chained.has(e.span_id))
        chains.push({ tool_call_id: e.details.tool_call_id || "", tool_name: e.details.tool_name, span_id: e.span_id, executed: true, decisions: [] });
    if (!chains.length) panel.append(el("div", { class: "muted" }, "No write tool calls."));
    for (const c of chains) {
      const chain = el("div", { class: "chain", "data-call": c.tool_call_id || c.span_id });
      if (!c.decisions.length) chain.append(badge("no policy or approval", "rejected"), el("span", { class: "arrow" }, "→"));
      for (const d of c.decisions) {
        const text = d.type === "policy_decision" ? "policy " + d.by + ": " + d.decision : d.decision + " by " + (d.by || "?");
        const title = d.linked_by === "inferred" ? "linked by time (the decision names no call)" : "linked by " + d.linked_by;
        chain.append(badge(text + (d.linked_by === "inferred" ? " (inferred)" : ""), d.decision, title), el("span", { class: "arrow" }, "→"));
      }
      chain.append(c.executed ? badge("call " + c.tool_name, "write-access") : badge("not executed: " + c.tool_name, "rejected"));
      for (const w of t.writes.filter((w) => w.tool_call && c.span_id && w.tool_call.span_id === c.span_id))
        chain.append(el("span", { class: "arrow" }, "→"), badge(w.write.system + " " + w.write.action + " " + w.write.ref, "trusted"));
      const call = t.entries.find((e) => c.span_id && e.span_id === c.span_id);
      if (call && call.findings.length) chain.append(...call.findings.map((f) => badge(humanize(f), "check")));
      panel.append(chain);
    }
    return panel;
  }

  // Tokens and cost for the run and for each model call.
  renderTotals() {
    const totals = this.t.totals;
    const panel = el("section", { class: "panel", id: "totals", "aria-labelledby": "totals-h" }, el("h2", { id: "totals-h" }, "Tokens and cost"));
    if (!totals) { panel.append(el("div", { class: "muted" }, "Not reported.")); return panel; }
    const calls = this.t.entries.filter((e) => e.type === "prompt");
    const rows = calls.map((e) => el("tr", {},
      el("td", {}, this.focusLink(e.name, { span: e.span_id })), el("td", { class: "mono" }, e.details.model || "—"),
      el("td", { class: "num" }, fmtInt(e.details.input_tokens || 0)), el("td", { class: "num" }, fmtInt(e.details.output_tokens || 0)),
      el("td", { class: "num" }, fmtCost(e.cost_usd)), el("td", { class: "num" }, fmtDuration(e.duration_ms))));
    rows.push(el("tr", { class: "total" }, el("th", { scope: "row" }, "run (" + totals.model_calls + " model calls)"), el("td", {}, ""),
      el("td", { class: "num" }, fmtInt(totals.input_tokens)), el("td", { class: "num" }, fmtInt(totals.output_tokens)),
      el("td", { class: "num", title: "models " + fmtCost(totals.model_cost_usd) + " + tools " + fmtCost(totals.tool_cost_usd) }, fmtCost(totals.cost_usd)), el("td", {}, "")));
    panel.append(el("table", { class: "totals" }, el("thead", {}, el("tr", {}, ...["model call", "model", "input tokens", "output tokens", "cost", "duration"]
      .map((h, i) => el("th", { scope: "col", class: i >= 2 ? "num" : null }, h)))), el("tbody", {}, rows)));
    if (totals.unpriced_models.length) panel.append(el("div", { class: "muted" }, "No price configured for " + totals.unpriced_models.join(", ") + " (counted as $0)."));
    return panel;
  }

  // Every span of the run on one time axis, grouped by trace, indented under its parent.
  renderWaterfall() {
    const spans = this.t.entries.filter((e) => e.type !== "write");
    const byId = new Map(spans.map((e) => [e.span_id, e]));
    const depth = new Map();
    const depthOf = (e) => {
      if (depth.has(e.span_id)) return depth.get(e.span_id);
      depth.set(e.span_id, 0);
      let d = 0, p = byId.get(e.parent_span_id), guard = 0;
      while (p && guard++ < 64) { d++; p = byId.get(p.parent_span_id); }
      depth.set(e.span_id, d);
      return d;
    };
    const total = Math.max(this.endNs - this.startNs, 1);
    const list = el("ol", { class: "wf", id: "waterfall-rows" });
    const traces = [...new Set(spans.map((e) => e.trace_id))];
    const types = [...new Set(spans.map((e) => e.type))].sort((a, b) => TYPE_ORDER.indexOf(a) - TYPE_ORDER.indexOf(b));
    for (const trace of traces) {
      if (traces.length > 1) list.append(el("li", { class: "wf-trace" }, "trace " + trace));
      for (const e of spans.filter((s) => s.trace_id === trace)) {
        const bar = el("span", { class: "wf-bar c-" + this.colour(e.type) + (e.findings.length ? " flagged" : "") });
        bar.style.left = ((e.start_unix_nano - this.startNs) / total * 100).toFixed(3) + "%";
        bar.style.width = Math.max((e.end_unix_nano - e.start_unix_nano) / total * 100, 0.2).toFixed(3) + "%";
        const name = el("span", { class: "wf-name", title: e.name }, e.name);
        name.style.paddingLeft = (depthOf(e) * 12) + "px";
        const row = el("button", { type: "button", class: "wf-row", "data-span": e.span_id,
          "aria-label": e.type + " " + e.name + ", " + fmtDuration(e.duration_ms) + ", starts " + fmtOffset(e.start_unix_nano, this.startNs) },
          name, el("span", { class: "wf-track" }, bar), el("span", { class: "wf-dur" }, fmtDuration(e.duration_ms)));
        row.addEventListener("click", () => this.focus({ span: e.span_id }));
        row.addEventListener("keydown", (ev) => {
          if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
          ev.preventDefault();
          const rows = [...list.querySelectorAll(".wf-row")];
          const next = rows[rows.indexOf(row) + (ev.key === "ArrowDown" ? 1 : -1)];
          if (next) next.focus();
        });
        list.append(el("li", {}, row));
      }
    }
    const legend = el("div", { class: "wf-legend", "aria-hidden": "true" }, types.map((t) => el("span", { class: "c-" + this.colour(t) }, humanize(t))));
    return el("section", { class: "panel", id: "waterfall", "aria-labelledby": "wf-h" },
      el("h2", { id: "wf-h" }, "Waterfall (" + spans.length + " spans, " + traces.length + " trace" + (traces.length === 1 ? "" : "s") + ", " + fmtDuration(total / 1e6) + ")"), legend, list);
  }

  colour(type) { return TYPE_ORDER.includes(type) ? type : "span"; }

  renderTimeline() {
    const types = [...new Set(this.entries.map((e) => e.type))].sort((a, b) => TYPE_ORDER.indexOf(a) - TYPE_ORDER.indexOf(b));
    const flow = el("div", { class: "flow", id: "entries" });
    for (const e of this.entries) flow.append(this.entry(e));
    const toolbar = el("div", { class: "toolbar", role: "group", "aria-label": "show entry types" },
      types.map((type) => {
        const box = el("input", { type: "checkbox", name: "type", value: type, checked: true });
        box.addEventListener("change", () => { for (const n of flow.querySelectorAll(".t-" + type)) n.hidden = !box.checked; });
        return el("label", {}, box, " " + humanize(type) + " (" + this.entries.filter((x) => x.type === type).length + ")");
      }));
    const expand = el("button", { type: "button", class: "quiet", id: "expand-all" }, "Expand all");
    const collapse = el("button", { type: "button", class: "quiet", id: "collapse-all" }, "Collapse all");
    expand.addEventListener("click", () => { for (const d of flow.querySelectorAll("details.entry")) d.open = true; });
    collapse.addEventListener("click", () => { for (const d of flow.querySelectorAll("details.entry")) d.open = false; });
    toolbar.append(expand, collapse);
    return el("section", { class: "panel", id: "timeline", "aria-labelledby": "tl-h" },
      el("h2", { id: "tl-h" }, "Timeline (" + this.entries.length + " entries; times from the run's start)"), toolbar, flow);
  }

  entry(e) {
    const reported = this.reported.get(e.span_id) || [];
    const findings = [...e.findings, ...reported.flatMap((w) => w.findings)];
    const cls = ["entry", "t-" + e.type, "c-" + this.colour(e.type), findings.length ? "flagged" : "", e.status === "ERROR" ? "error" : ""].filter(Boolean).join(" ");
    const id = e.type === "write" ? "write-" + encodeURIComponent(e.details.ref || "") : "span-" + e.span_id;
    const head = el("summary", {},
      el("span", { class: "time", title: fmtAbsolute(e.start_time) + " UTC" }, fmtOffset(e.start_unix_nano, this.startNs)),
      badge(humanize(e.type), "type"), el("span", { class: "name" }, e.name));
    if (e.type !== "write") head.append(el("span", { class: "dur" }, fmtDuration(e.duration_ms)));
    if (e.details.access === "write") head.append(badge("write access", "write-access"));
    if ((e.type === "approval" || e.type === "policy_decision") && e.details.decision) head.append(badge(e.details.decision, e.details.decision));
    head.append(...provenanceBadges(e.details));
    for (const w of reported) head.append(badge("reported by " + w.details.source, "trusted"));
    if (e.status === "ERROR") head.append(badge("error: " + e.status_message, "check"));
    head.append(...findings.map((c) => badge(humanize(c), "check")));
    const renders = new Map((this.fields[e.type] || []).map((f) => [f.name, f.render]));
    const brief = (this.summaryFields[e.type] || []).filter((k) => e.details[k] != null && e.details[k] !== "")
      .map((k) => renders.get(k) === "tokens" ? fmtInt(e.details[k]) + " " + k.replace("_tokens", "").replace("input", "in").replace("output", "out") : e.details[k]).join(" · ");
    if (brief) head.append(el("span", { class: "brief" }, brief));
    const node = el("details", { class: cls, id, "data-span": e.span_id || null, "data-write": e.type === "write" ? e.details.ref : null }, head);
    for (const w of reported) node.dataset.write = w.details.ref;
    let built = false;
    const build = () => { if (!built) { built = true; node.append(this.body(e, reported)); } };
    node.addEventListener("toggle", () => { if (node.open) build(); });
    this.nodes.set(id, node);
    return node;
  }

  // An entry's fields in the registry's order and rendering; a value already shown under another name
  // (a tool's input that is its arguments) is not repeated.
  body(e, reported) {
    const details = el("dl", { class: "details" });
    const seen = new Set();
    const known = this.fields[e.type] || this.fields.span || [];
    const names = [...known.map((f) => [f.name, f.render]), ...Object.keys(e.details).filter((k) => !known.some((f) => f.name === k)).map((k) => [k, "text"])];
    for (const [name, render] of names) {
      const value = e.details[name];
      if (value == null || value === "" || name === "url") continue;
      const key = typeof value === "string" && value.length > 20 ? value : null;
      if (key && seen.has(key)) continue;
      if (key) seen.add(key);
      details.append(el("dt", {}, humanize(name)), el("dd", {}, renderValue(render, value)));
    }
    if (e.cost_usd != null) details.append(el("dt", {}, "cost"), el("dd", {}, fmtCost(e.cost_usd)));
    for (const w of [...(e.type === "write" ? [e] : []), ...reported]) {
      // Only web links become links: a reported url could be javascript: or data:.
      if (w.details.url) details.append(el("dt", {}, "link"), el("dd", {}, /^https?:\/\//i.test(w.details.url)
        ? el("a", { href: w.details.url, target: "_blank", rel: "noopener noreferrer" }, w.details.url) : w.details.url));
      if (w !== e) details.append(el("dt", {}, "reported by"), el("dd", {}, w.details.source + " at " + fmtAbsolute(w.start_time)));
    }
    if (e.type === "write") details.append(el("dt", {}, "made by"), el("dd", {}, e.linked_span_id
      ? this.focusLink("tool call span " + e.linked_span_id, { span: e.linked_span_id }) : el("span", { class: "err" }, "no tool call accounts for this write")));
    if (e.phoenix_url && /^https?:\/\//i.test(e.phoenix_url)) details.append(el("dt", {}, "Phoenix"), el("dd", {}, el("a", { href: e.phoenix_url, target: "_blank", rel: "noopener noreferrer" }, "open the span in Phoenix")));
    for (const a of e.annotations || []) details.append(el("dt", {}, "annotation"), el("dd", {}, a.name + ": " + (a.label || a.score) + (a.explanation ? " — " + a.explanation : "") + " (" + a.annotator + ")"));
    const body = el("div", { class: "body" }, details);
    if (e.type !== "write") {
      const attrs = el("details", { class: "fold" }, el("summary", {}, "all attributes (" + Object.keys(e.attributes).length + ") · span " + e.span_id + " · trace " + e.trace_id));
      attrs.addEventListener("toggle", () => { if (attrs.open && attrs.children.length === 1) attrs.append(el("pre", { class: "json" }, JSON.stringify(e.attributes, null, 2))); });
      body.append(attrs);
    }
    return body;
  }

  // Open the entry (showing its type again if filtered out), scroll to it, and mark it and its waterfall row.
  focus(target) {
    let node = target.span ? this.nodes.get("span-" + target.span) : null;
    if (!node && target.write) node = [...this.nodes.values()].find((n) => n.dataset.write === target.write);
    if (!node) return;
    if (node.hidden) { const type = [...node.classList].find((c) => c.startsWith("t-")).slice(2); const box = document.querySelector("input[name=type][value='" + type + "']"); if (box) { box.checked = true; box.dispatchEvent(new Event("change")); } }
    node.open = true;
    for (const row of document.querySelectorAll(".wf-row.focused")) row.classList.remove("focused");
    const row = target.span && document.querySelector(".wf-row[data-span='" + CSS.escape(target.span) + "']");
    if (row) row.classList.add("focused");
    for (const n of document.querySelectorAll(".entry.hl")) n.classList.remove("hl");
    node.classList.add("hl");
    node.scrollIntoView({ block: "center" });
    node.querySelector("summary").focus({ preventScroll: true });
  }
}
