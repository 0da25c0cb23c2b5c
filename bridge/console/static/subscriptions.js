// Subscriptions: the list with each one's last hour, and create, edit, delete, replay, test, rotate and
// each attempt's request and response.

import { api, enc, everything } from "./api.js";
import {
  ago, badge, button, commaList, el, flash, ifAdmin, isoOf, list, localInput, plural, pretty, problem,
  shell, showSecret, table,
} from "./dom.js";

const HOUR_MS = 3600_000;
const path = (s, tail = "") => `/v1/subscriptions/${enc(s.id)}${tail}`;
/** Whether the bridge takes `fields`, `redact` and `payload` (a subscription then carries `payload`). */
const shapes = (s) => "payload" in s;
const pulled = (s) => s.delivery === "pull";
/** How a subscription is named: its URL, or for a pull subscription its id. */
export const nameOf = (s) => (pulled(s) ? `pull feed ${s.id}` : s.url);

export async function subscriptions() {
  const subs = (await everything("/v1/subscriptions")).sort((a, b) => a.created_at.localeCompare(b.created_at));
  const [recent, stats] = await Promise.all([
    Promise.all(subs.map((s) => api(path(s, "/deliveries?limit=5")).catch(() => ({ data: [] })))),
    Promise.all(subs.map((s) => api(path(s, "/stats")).catch(() => null))),
  ]);
  const detail = el("section", { class: "detail", id: "subscription-detail" });
  const rows = subs.map((s, n) => {
    const attempts = recent[n].data;
    const failed = attempts.find((a) => a.outcome !== "ok");
    return el("tr", { "data-subscription": s.id },
      el("td", { class: "url" },
        pulled(s) ? [badge("pull"), ` ${plural(s.pending_deliveries ?? 0, "event")} waiting to be read`] : s.url,
        s.description ? el("div", { class: "muted" }, s.description) : ""),
      el("td", {}, `events: ${list(s.event_types, "all")}`, el("br"), `schools: ${list(s.school_ids, "all")}`,
        shaping(s)),
      el("td", {}, badge(s.enabled ? "enabled" : "disabled"),
        s.disabled_reason ? el("div", { class: "muted" }, s.disabled_reason) : "",
        s.failing_since ? el("div", { class: "muted" }, "failing since ", ago(s.failing_since)) : ""),
      problem(failed ? attemptProblem(failed) : ""),
      el("td", { class: "hour" }, lastHour(stats[n])),
      el("td", {}, attempts.length
        ? attempts.map((a) => badge(a.status_code ?? "err", a.outcome === "ok" ? "ok" : "failing")) : "none"),
      el("td", { class: "actions" },
        ...ifAdmin(
          button("Edit", () => editForm(detail, s)),
          button("Replay", () => replayForm(detail, s)),
          button(s.enabled ? "Disable" : "Enable", async () => {
            await api(path(s), { method: "PATCH", body: { enabled: !s.enabled } });
            flash(`Subscription ${s.id} ${s.enabled ? "disabled" : "enabled"}.`);
            await shell.render();
          }),
          pulled(s) ? "" : button("Rotate secret", async () => {
            showSecret(await api(path(s, "/rotate-secret"), { method: "POST" }),
              "The old secret keeps signing alongside for 24 hours.");
          }),
          pulled(s) ? "" : button("Send test", async () => {
            const t = await api(path(s, "/test"), { method: "POST" });
            await shell.render();
            flash(t.success ? `Test delivered: HTTP ${t.status_code} in ${t.duration_ms.toFixed(0)} ms.`
              : `Test failed: ${t.error || `HTTP ${t.status_code}`}.`, t.success ? "ok" : "error");
          }),
          deleteButton(s)),
        button("Attempts", () => showAttempts(detail, s))));
  });
  return [
    el("h1", {}, "Subscriptions"),
    ...ifAdmin(createForm()),
    table(["URL", "Filters", "State", "Last error", "Last hour", "Recent attempts", ""], rows,
      "No subscriptions yet.", { id: "subscriptions-table" }),
    detail,
  ];
}

const attemptProblem = (a) => a.error || `HTTP ${a.status_code}`;

function shaping(s) {
  if (!shapes(s)) return "";
  const parts = [];
  if (s.fields) parts.push(`fields: ${Object.keys(s.fields).sort().join(", ")}`);
  if (s.redact && s.redact.length) parts.push(`redact: ${s.redact.join(", ")}`);
  if (s.payload && s.payload !== "full") parts.push(`payload: ${s.payload}`);
  return parts.map((p) => el("div", { class: "muted" }, p));
}

function lastHour(stats) {
  if (!stats) return el("span", { class: "muted" }, "unknown");
  if (!stats.attempts) return el("span", { class: "muted" }, "no attempts");
  const rate = `${Math.round(stats.success_rate * 100)}% ok`;
  const latency = stats.latency_ms
    ? `latency p50 ${fmtMs(stats.latency_ms.p50)}, p95 ${fmtMs(stats.latency_ms.p95)}` : "nothing delivered";
  return [el("div", { class: stats.success_rate < 1 ? "warn" : "" }, `${rate} of ${plural(stats.attempts, "attempt")}`),
    el("div", { class: "muted" }, latency)];
}

const fmtMs = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);

/** Delete asks twice: the first click arms the button, the second removes the subscription. */
function deleteButton(s) {
  const node = button("Delete", async () => {
    if (node.dataset.armed !== "yes") {
      node.dataset.armed = "yes";
      node.textContent = "Confirm delete";
      return;
    }
    await api(path(s), { method: "DELETE" });
    flash(`Subscription ${s.id} deleted, with its queue, dead letters and attempt log.`);
    await shell.render();
  }, { class: "danger" });
  return node;
}

function filterFields(s = {}) {
  return [
    el("label", {}, "Event types", el("input", { name: "event_types", value: list(s.event_types, ""),
      placeholder: "all, or e.g. debtor.*, learner.created" })),
    el("label", {}, "School ids", el("input", { name: "school_ids", value: list(s.school_ids, ""),
      placeholder: "all, or e.g. 1000, 1001" })),
    el("label", {}, "Description", el("input", { name: "description", value: s.description ?? "" })),
  ];
}

function filterBody(f) {
  return {
    event_types: f.event_types.value.trim() ? commaList(f.event_types.value) : null,
    school_ids: f.school_ids.value.trim() ? commaList(f.school_ids.value).map(Number) : null,
    description: f.description.value.trim() || null,
  };
}

function createForm() {
  const form = el("form", { class: "create", id: "create-subscription" },
    el("label", {}, "Delivery", el("select", { name: "delivery" },
      el("option", { value: "webhook", selected: true }, "webhook (POSTed to a URL)"),
      el("option", { value: "pull" }, "pull (read from its feed: no URL)"))),
    el("label", {}, "URL", el("input", { name: "url", type: "url", required: true, placeholder: "https://example.org/webhooks/d6" })),
    ...filterFields(),
    el("label", { class: "inline" }, el("input", { name: "ordered", type: "checkbox", checked: true }), "ordered"),
    el("button", { type: "submit" }, "Create subscription"));
  form.elements.delivery.addEventListener("change", () => {
    form.elements.url.required = form.elements.delivery.value === "webhook";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = f.delivery.value === "pull" ? { delivery: "pull" } : { url: f.url.value.trim(), ordered: f.ordered.checked };
    for (const [key, value] of Object.entries(filterBody(f))) if (value !== null) body[key] = value;
    try {
      const created = await api("/v1/subscriptions", { method: "POST", body });
      await shell.render();
      if (pulled(created)) flash(`Pull subscription ${created.id} created: its reader reads GET ${path(created, "/feed")} with a subscription token.`);
      else showSecret(created, "Subscription created.");
    } catch (error) { flash(error.message, "error"); }
  });
  return el("details", {}, el("summary", {}, "New subscription"), form);
}

/** `fields` as text, a resource a line: `learner: first_name, grade`. */
const fieldsText = (fields) => Object.entries(fields || {}).map(([r, names]) => `${r}: ${names.join(", ")}`).join("\n");

function fieldsOf(text) {
  const lines = text.split("\n").map((line) => line.trim()).filter(Boolean);
  if (!lines.length) return null;
  return Object.fromEntries(lines.map((line) => {
    const [resource, names = ""] = line.split(":");
    return [resource.trim(), commaList(names)];
  }));
}

function editForm(detail, s) {
  const form = el("form", { class: "create", id: "edit-subscription" },
    pulled(s) ? "" : el("label", {}, "URL", el("input", { name: "url", type: "url", required: true, value: s.url })),
    ...filterFields(s),
    el("label", { class: "inline" }, el("input", { name: "enabled", type: "checkbox", checked: s.enabled }), "enabled"),
    shapes(s) ? [
      el("label", {}, "Fields (per resource; ids always sent)", el("textarea", { name: "fields", rows: 3,
        placeholder: "learner: first_name, grade\ndebtor: debtor_code, email_address" }, fieldsText(s.fields))),
      el("label", {}, "Redact", el("input", { name: "redact", value: list(s.redact, ""), placeholder: "e.g. id_number, passport_number" })),
      el("label", {}, "Payload", el("select", { name: "payload" },
        ["full", "thin"].map((p) => el("option", { value: p, selected: s.payload === p }, p)))),
    ] : "",
    el("button", { type: "submit" }, "Save"),
    button("Cancel", () => detail.replaceChildren(), { class: "quiet-light" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = { enabled: f.enabled.checked, ...filterBody(f) };
    if (!pulled(s)) body.url = f.url.value.trim();
    if (shapes(s)) {
      body.fields = fieldsOf(f.fields.value);
      body.redact = f.redact.value.trim() ? commaList(f.redact.value) : null;
      body.payload = f.payload.value;
    }
    try {
      await api(path(s), { method: "PATCH", body });
      await shell.render();
      flash(`Subscription ${s.id} saved.`);
    } catch (error) { flash(error.message, "error"); }
  });
  detail.replaceChildren(el("h2", {}, `Edit ${nameOf(s)}`), form);
}

function replayForm(detail, s) {
  const now = Date.now();
  const form = el("form", { class: "create", id: "replay-subscription" },
    el("label", {}, "Since", el("input", { name: "since", type: "datetime-local", step: 1, required: true,
      value: localInput(new Date(now - HOUR_MS)) })),
    el("label", {}, "Until (empty: now)", el("input", { name: "until", type: "datetime-local", step: 1 })),
    el("label", { class: "inline" }, el("input", { name: "only_failed", type: "checkbox" }), "only its dead letters"),
    el("button", { type: "submit" }, "Replay"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = { since: isoOf(f.since.value), only_failed: f.only_failed.checked };
    if (f.until.value) body.until = isoOf(f.until.value);
    try {
      const result = await api(path(s, "/replay"), { method: "POST", body });
      flash(`Replay to ${nameOf(s)}: ${plural(result.queued, "event")} queued.`);
    } catch (error) { flash(error.message, "error"); }
  });
  detail.replaceChildren(el("h2", {}, `Replay a time window to ${nameOf(s)}`),
    el("p", { class: "hint" }, "Every event of the window that the subscription matches is sent again, oldest first."),
    form);
}

async function showAttempts(detail, s) {
  const [one, page] = await Promise.all([api(path(s)), api(path(s, "/deliveries?limit=25"))]);
  const box = el("div", { id: "attempt-detail" });
  detail.replaceChildren(
    el("h2", {}, `Attempts to ${nameOf(s)}`),
    el("p", {}, `${one.pending_deliveries ?? 0} pending, ${one.dead_letters ?? 0} dead letters.`),
    table(["Time", "Event", "Attempt", "Outcome", "Answer", "ms", ""], page.data.map((a) => el("tr", {},
      el("td", {}, ago(a.time)),
      el("td", {}, a.event_type, el("div", { class: "muted mono" }, a.event_id)),
      el("td", { class: "num" }, a.attempt),
      el("td", {}, badge(a.outcome, a.outcome === "ok" ? "ok" : "failing")),
      el("td", { class: a.outcome === "ok" ? "" : "error-text" }, a.error || `HTTP ${a.status_code}`,
        a.response_body ? el("div", { class: "muted mono clip" }, a.response_body) : ""),
      el("td", { class: "num" }, a.duration_ms.toFixed(0)),
      el("td", {}, button("Request and response", () => showAttempt(box, s, a), { class: "link" })))),
    "No attempts yet."),
    box);
}

async function showAttempt(box, s, a) {
  const test = a.delivery_id === "test";
  const event = test ? null : await api(`/v1/events/${enc(a.event_id)}`).then((d) => d.event, () => null);
  const shaped = shapes(s) && (s.fields || (s.redact && s.redact.length) || s.payload === "thin");
  box.replaceChildren(
    el("h3", {}, `Attempt ${a.attempt} of ${a.event_type}, ${a.time}`),
    el("h4", {}, "Request headers"),
    el("dl", { class: "headers", id: "attempt-headers" },
      Object.entries(a.request_headers).flatMap(([name, value]) => [el("dt", {}, name), el("dd", { class: "mono" }, value)])),
    el("p", { class: "hint" }, "Told again from the attempt log: the signature is masked, the timestamp is the attempt's start."),
    el("h4", {}, "Request body"),
    event ? el("pre", { class: "body", id: "attempt-body" }, pretty(event))
      : el("p", { class: "muted" }, test ? "A test send's body is not kept." : "The event is no longer in the log."),
    shaped ? el("p", { class: "hint" }, "This subscription's fields, redact and payload options shape the body before it is sent.") : "",
    el("h4", {}, "Response"),
    el("p", { id: "attempt-status" }, a.status_code ? `HTTP ${a.status_code}` : a.error, ` in ${a.duration_ms.toFixed(0)} ms`,
      a.status_code && a.error ? ` (${a.error})` : ""),
    a.response_body ? el("pre", { class: "body", id: "attempt-response" }, a.response_body)
      : el("p", { class: "muted" }, "No response body."));
}
