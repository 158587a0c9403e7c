// How a detail is shown, by the rendering the registry gives it (schema/registry/presentation.yaml):
// chat messages as a conversation, documents as cards, JSON pretty-printed, long values folded.
import { badge, el, redactedText } from "./common.js";

const FOLD_CHARS = 600;
const FOLD_LINES = 12;
const UNTRUSTED = new Set(["user_provided", "retrieved"]);

function parseJson(value) {
  if (typeof value !== "string") return { ok: true, value };
  const text = value.trim();
  if (!text || !"[{\"".includes(text[0])) return { ok: false };
  try { return { ok: true, value: JSON.parse(text) }; } catch { return { ok: false }; }
}

// Long text shows its start; the rest opens on request (a <details>, so the keyboard can open it too).
export function folded(text, build) {
  const lines = text.split("\n").length;
  if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return build(text);
  const preview = text.split("\n").slice(0, FOLD_LINES).join("\n").slice(0, FOLD_CHARS);
  const fold = el("details", { class: "fold" },
    el("summary", {}, "show all (" + text.length.toLocaleString("en-US") + " characters, " + lines + " lines)"));
  const body = build(text);
  fold.append(body);
  const head = build(preview + "…");
  fold.addEventListener("toggle", () => { head.hidden = fold.open; });
  return el("div", {}, head, fold);
}

function pre(text) { return el("pre", { class: "json" }, redactedText(text)); }

export function contentValue(value) {
  const parsed = parseJson(value);
  const text = parsed.ok && typeof parsed.value === "object" && parsed.value !== null
    ? JSON.stringify(parsed.value, null, 2) : String(value);
  return folded(text, pre);
}

// The parts of a message in any of the encodings the collector stores: OTel GenAI parts, OpenAI content.
function messageText(message) {
  const pieces = [];
  const content = message.content ?? message.parts ?? message.text;
  if (typeof content === "string") pieces.push(content);
  else if (Array.isArray(content)) {
    for (const part of content) {
      if (typeof part === "string") pieces.push(part);
      else if (part && (part.type === "text" || part.text != null || part.content != null) && part.type !== "tool_call" && part.type !== "tool_call_response")
        pieces.push(typeof (part.content ?? part.text) === "string" ? (part.content ?? part.text) : JSON.stringify(part.content ?? part.text, null, 2));
      else if (part && part.type === "tool_call")
        pieces.push("→ call " + (part.name || "tool") + (part.id ? " [" + part.id + "]" : "") + " " + JSON.stringify(part.arguments ?? {}, null, 2));
      else if (part && part.type === "tool_call_response")
        pieces.push("← result" + (part.id ? " [" + part.id + "]" : "") + " " + (typeof part.response === "string" ? part.response : JSON.stringify(part.response, null, 2)));
      else pieces.push(JSON.stringify(part, null, 2));
    }
  }
  for (const call of message.tool_calls || []) {
    const fn = call.function || call;
    pieces.push("→ call " + (fn.name || "tool") + " " + (typeof fn.arguments === "string" ? fn.arguments : JSON.stringify(fn.arguments ?? {}, null, 2)));
  }
  return pieces.join("\n");
}

export function messagesValue(value) {
  const parsed = parseJson(value);
  let messages = parsed.ok ? parsed.value : null;
  if (messages && !Array.isArray(messages)) messages = [messages];
  if (!messages || !messages.every((m) => m && typeof m === "object")) return contentValue(value);
  const list = el("div", { class: "conversation" });
  for (const message of messages) {
    const role = String(message.role || (message.type === "text" ? "system" : "message"));
    const text = messageText(message);
    list.append(el("div", { class: "msg role-" + role.replace(/[^a-z_]/gi, "") },
      el("span", { class: "role" }, role + (message.finish_reason ? " · " + message.finish_reason : "")),
      folded(text, (t) => el("span", {}, redactedText(t)))));
  }
  return list;
}

export function documentsValue(value) {
  const parsed = parseJson(value);
  const docs = parsed.ok && Array.isArray(parsed.value) ? parsed.value : null;
  if (!docs) return contentValue(value);
  return el("div", {}, docs.map((doc) => {
    if (!doc || typeof doc !== "object") return el("div", { class: "doc" }, redactedText(String(doc)));
    const { content, text, ...meta } = doc;
    const body = content ?? text ?? "";
    return el("div", { class: "doc" },
      el("span", { class: "meta" }, Object.entries(meta).map(([k, v]) => k + ": " + (typeof v === "string" ? v : JSON.stringify(v))).join("  ")),
      folded(typeof body === "string" ? body : JSON.stringify(body, null, 2), (t) => el("span", {}, redactedText(t))));
  }));
}

export function labelsValue(value) {
  const parsed = parseJson(value);
  const labels = parsed.ok && Array.isArray(parsed.value) ? parsed.value : [value];
  return el("span", {}, labels.map((l) => badge(String(l), UNTRUSTED.has(l) ? "untrusted" : "trusted")));
}

export function renderValue(render, value) {
  switch (render) {
    case "content": return contentValue(value);
    case "messages": return messagesValue(value);
    case "documents": return documentsValue(value);
    case "labels": return labelsValue(value);
    case "hash": return el("span", { class: "mono", title: String(value) }, String(value).slice(0, 23) + (String(value).length > 23 ? "…" : ""));
    case "tokens": return el("span", {}, Number(value).toLocaleString("en-US"));
    default: return el("span", {}, redactedText(String(value)));
  }
}

export function provenanceBadges(details) {
  const labels = [];
  if (details.provenance) labels.push(details.provenance);
  if (details.influenced_by) { const p = parseJson(details.influenced_by); if (p.ok && Array.isArray(p.value)) labels.push(...p.value); else labels.push(details.influenced_by); }
  return [...new Set(labels)].map((p) => badge(p, UNTRUSTED.has(p) ? "untrusted" : "trusted"));
}
