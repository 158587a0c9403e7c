// Shared by the page's modules: element building (text only, never HTML strings), the API, formatting.
export const $ = (id) => document.getElementById(id);
const REDACTION = /\[[A-Z][A-Z0-9_]{1,30}\]/g;

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child != null) node.append(child instanceof Node ? child : String(child));
  return node;
}

// Text with [EMAIL]-style redaction placeholders marked, so a responder sees what was masked.
export function redactedText(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const out = []; let last = 0;
  for (const m of text.matchAll(REDACTION)) {
    out.push(text.slice(last, m.index));
    out.push(el("span", { class: "redacted", title: "redacted by the collector" }, m[0]));
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export function badge(text, cls, title) { return el("span", { class: "badge " + (cls || ""), title }, text); }

export async function api(path) {
  const key = $("key").value.trim();
  sessionStorage.setItem("agentledger.key", key);
  const response = await fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {} });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { status: response.status, body };
}

export function detailText(body, fallback) {
  if (!body || body.detail == null) return fallback;
  return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
}

export function status(text, isError) { const s = $("status"); s.textContent = text; s.className = isError ? "err" : "muted"; }

// The page of one run: the same address the API's log lines, the CLI and the report link to.
export function runHref(runId) { return "/ui?" + new URLSearchParams({ run: runId }); }

// A link that opens in the page without a reload (and still works opened in a new tab).
export function pageLink(href, text, cls) {
  const a = el("a", { href, class: cls }, text);
  a.addEventListener("click", (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault(); navigate(href);
  });
  return a;
}
export function navigate(href) {
  history.pushState(null, "", href);
  window.dispatchEvent(new Event("agentledger:navigate"));
}

export function fmtDuration(ms) {
  if (ms == null || !isFinite(ms)) return "—";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60_000) return (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) + " s";
  if (ms < 3_600_000) return Math.floor(ms / 60_000) + " min " + Math.round((ms % 60_000) / 1000) + " s";
  return (ms / 3_600_000).toFixed(1) + " h";
}
// Relative to the run's start, as +s.mmm (or +m:ss.mmm); the absolute time goes in the title.
export function fmtOffset(ns, startNs) {
  const ms = Math.max(0, (ns - startNs) / 1e6);
  if (ms < 60_000) return "+" + (ms / 1000).toFixed(3) + " s";
  const minutes = Math.floor(ms / 60_000);
  return "+" + minutes + ":" + ((ms % 60_000) / 1000).toFixed(3).padStart(6, "0");
}
// An RFC 3339 time with nanoseconds, cut to milliseconds for people.
export function fmtAbsolute(rfc3339) { return String(rfc3339).replace(/(\.\d{3})\d*Z$/, "$1Z").replace("T", " "); }
export function fmtAgo(rfc3339) {
  const ms = Date.now() - Date.parse(rfc3339);
  if (!isFinite(ms)) return rfc3339;
  if (ms < 60_000) return "just now";
  if (ms < 3_600_000) return Math.floor(ms / 60_000) + " min ago";
  if (ms < 86_400_000) return Math.floor(ms / 3_600_000) + " h ago";
  return Math.floor(ms / 86_400_000) + " d ago";
}
export function fmtCost(usd) {
  if (usd == null) return "—";
  if (usd === 0) return "$0";
  return usd < 0.01 ? "$" + usd.toFixed(4) : "$" + usd.toFixed(2);
}
export function fmtInt(n) { return n == null ? "—" : Number(n).toLocaleString("en-US"); }

// Most severe first; the findings helper may add severities beyond high and medium.
export const SEVERITIES = ["critical", "high", "medium", "low", "info"];
export function severityRank(s) { const i = SEVERITIES.indexOf(s); return i < 0 ? SEVERITIES.length : i; }
export function humanize(name) { return String(name).replace(/_/g, " "); }
