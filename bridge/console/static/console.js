// d6 bridge operator console: one module, no dependencies, built on the /v1 API.
// Every value that comes from d6 or a subscriber reaches the page through el() as a text node or an
// attribute value; nothing is ever parsed as HTML.

const TOKEN_KEY = "d6b.admin-token";
const EVENT_TYPES = [
  "integration.authorised", "integration.activated", "integration.deactivated", "integration.revoked",
  "debtor.created", "debtor.updated", "debtor.removed",
  "learner.created", "learner.updated", "learner.removed", "webhook.test",
];
const HOUR_MS = 3600_000;
const MAX_CHART_PAGES = 10; // 10 pages of 500: the chart shows at most 5,000 events an hour exactly
const OVERVIEW_REFRESH_MS = 15_000;

const $ = (id) => document.getElementById(id);
let renderCount = 0;

// ---- DOM -------------------------------------------------------------------------------------

/** An element: props are attributes (on* are listeners); children are nodes or text. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function table(headings, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el("table", {},
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

const badge = (text, kind = text) => el("span", { class: `badge ${kind}` }, text);

function ago(iso) {
  if (!iso) return el("span", { class: "muted" }, "never");
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const text = seconds < 90 ? `${seconds} s ago` : seconds < 5400 ? `${Math.round(seconds / 60)} min ago`
    : seconds < 129600 ? `${Math.round(seconds / 3600)} h ago` : `${Math.round(seconds / 86400)} d ago`;
  return el("time", { datetime: iso, title: iso }, text);
}

function flash(message, kind = "ok") {
  const node = $("flash");
  node.className = kind;
  node.textContent = message;
  node.hidden = false;
}

function button(label, onclick, props = {}) {
  return el("button", {
    type: "button", ...props, onclick: async (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      try { await onclick(event); } catch (error) { report(error); } finally { target.disabled = false; }
    },
  }, label);
}

function report(error) {
  if (!(error instanceof SignedOut)) flash(error.message || String(error), "error");
}

const list = (values, all) => (values && values.length ? values.join(", ") : all);
const commaList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

// ---- API -------------------------------------------------------------------------------------

class SignedOut extends Error {}

async function request(path, { method = "GET", body } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) { showLogin(); throw new SignedOut("signed out"); }
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("The bridge refused this token; enter the admin token again.");
    throw new SignedOut("token refused");
  }
  return response;
}

async function api(path, options) {
  const response = await request(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: the status line says enough */ }
  if (!response.ok) throw new Error(`${data?.detail || response.statusText} (HTTP ${response.status})`);
  return data;
}

/** Every item of a list endpoint: its pages of `{data, meta: {next_cursor?}}` one after another. */
async function everything(path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(`${path}?${q({ ...params, limit: 500, cursor })}`);
    items.push(...page.data);
    cursor = page.meta.next_cursor;
  } while (cursor);
  return items;
}

const q = (params) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) search.set(key, value);
  return search.toString();
};

/** Prometheus text to a Map of `name{labels}` -> number. */
async function metrics() {
  const response = await request("/metrics");
  const values = new Map();
  for (const line of (await response.text()).split("\n")) {
    const match = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match && !line.startsWith("#")) values.set(match[1], Number(match[2]));
  }
  return values;
}

// ---- Overview --------------------------------------------------------------------------------

async function overview() {
  const since = Date.now() - HOUR_MS;
  const [schools, recent, m] = await Promise.all([everything("/v1/schools"), eventsSince(since), metrics()]);
  const states = { active: 0, failing: 0, inactive: 0, denied: 0, revoked: 0 };
  for (const s of schools) {
    const state = s.state === "active" && s.consecutive_failures > 0 ? "failing" : s.state;
    states[state] = (states[state] ?? 0) + 1;
  }
  const maxLag = Math.max(0, ...schools.map((s) => s.lag_seconds));
  const count = (name) => m.get(name) ?? 0;
  const delivered = count('d6_bridge_deliveries_total{outcome="ok"}');
  const failed = ["retry", "dead", "gone"].reduce((n, o) => n + count(`d6_bridge_deliveries_total{outcome="${o}"}`), 0);
  return [
    el("h1", {}, "Overview"),
    el("h2", {}, "Schools"),
    el("div", { class: "tiles" },
      tile("Active", states.active, "active"), tile("Failing", states.failing, states.failing ? "failing" : ""),
      tile("Inactive", states.inactive), tile("Denied", states.denied, states.denied ? "failing" : ""),
      tile("Revoked", states.revoked),
      tile("Max lag", `${maxLag.toFixed(0)} s`, maxLag > 0 ? "failing" : "")),
    el("h2", {}, `Events per minute, last hour (${recent.events.length}${recent.complete ? "" : "+"})`),
    chart(recent.events, since),
    el("h2", {}, "Deliveries"),
    el("div", { class: "tiles" },
      tile("Delivered", delivered, "active"), tile("Failed attempts", failed, failed ? "failing" : ""),
      tile("Pending", count("d6_bridge_pending_deliveries")),
      tile("Dead letters", count("d6_bridge_dead_letters"), count("d6_bridge_dead_letters") ? "dead" : "")),
    el("p", { class: "hint" }, "Delivery attempts are counted by this bridge process since it started; "
      + "pending and dead letters are over every replica."),
  ];
}

const tile = (label, value, kind = "") => el("div", { class: `tile ${kind}` },
  el("span", { class: "value" }, value), el("span", { class: "label" }, label));

async function eventsSince(since) {
  const events = [];
  let cursor = null;
  for (let page = 0; page < MAX_CHART_PAGES; page += 1) {
    const answer = await api(`/v1/events?${q({ since: new Date(since).toISOString(), limit: 500, cursor })}`);
    events.push(...answer.data);
    cursor = answer.meta.next_cursor;
    if (!cursor) return { events, complete: true };
  }
  return { events, complete: false };
}

function chart(events, since) {
  const buckets = new Array(60).fill(0);
  for (const e of events) {
    const minute = Math.floor((Date.parse(e.timestamp) - since) / 60_000);
    if (minute >= 0 && minute < 60) buckets[minute] += 1;
  }
  const top = Math.max(1, ...buckets);
  const height = 100;
  const bars = buckets.map((n, i) => {
    const h = Math.round((n / top) * height);
    const at = new Date(since + i * 60_000).toTimeString().slice(0, 5);
    return svg("rect", { x: i * 10, y: height - h, width: 9, height: Math.max(h, n ? 1 : 0), class: "bar" },
      svg("title", {}, `${at}: ${n} event${n === 1 ? "" : "s"}`));
  });
  return svg("svg", { viewBox: `0 -14 600 ${height + 30}`, class: "chart", role: "img",
    "aria-label": `events per minute over the last hour, at most ${top}` },
    svg("line", { x1: 0, y1: height, x2: 600, y2: height, class: "axis" }),
    ...bars,
    svg("text", { x: 0, y: -3, class: "label" }, `max ${top}/min`),
    svg("text", { x: 0, y: height + 14, class: "label" }, "60 min ago"),
    svg("text", { x: 600, y: height + 14, class: "label end" }, "now"));
}

// ---- Schools ---------------------------------------------------------------------------------

async function schools() {
  const data = await everything("/v1/schools");
  const rows = data.map((s) => el("tr", {},
    el("td", {}, String(s.school_id)),
    el("td", { class: "school-name" }, s.name ?? "—"),
    el("td", {}, badge(s.state === "active" && s.consecutive_failures > 0 ? "failing" : s.state),
      s.denied_since ? el("div", { class: "hint" }, "since ", ago(s.denied_since)) : "",
      s.state === "revoked" && s.revoked_since ? el("div", { class: "hint" }, "since ", ago(s.revoked_since)) : ""),
    el("td", {}, s.integrations.map((i) => el("div", {},
      `type ${i.api_type_id ?? "?"}: `, badge(i.activated ? "activated" : "authorised")))),
    el("td", {}, ago(s.last_successful_poll)),
    el("td", { class: "error-text" }, s.last_error
      ? [s.last_error, " ", ago(s.last_error_at), s.consecutive_failures ? ` (${s.consecutive_failures}×)` : ""]
      : "—"),
    el("td", { class: "num" }, s.learners ?? "—"),
    el("td", { class: "num" }, s.debtors ?? "—"),
    el("td", { class: "num" }, `${s.lag_seconds.toFixed(0)} s`),
    el("td", {}, s.state === "active" ? button("Poll now", async () => {
      await api(`/v1/schools/${s.school_id}/poll`, { method: "POST" });
      flash(`Poll of school ${s.school_id} queued.`);
    }) : "")));
  return [
    el("h1", {}, "Schools"),
    table(["ID", "Name", "State", "Integrations", "Last good poll", "Last error", "Learners", "Debtors",
      "Lag", ""], rows, "No schools yet: the bridge has not seen any integration."),
  ];
}

// ---- Subscriptions ---------------------------------------------------------------------------

async function subscriptions() {
  const subs = (await everything("/v1/subscriptions")).sort((a, b) => a.created_at.localeCompare(b.created_at));
  const recent = await Promise.all(subs.map((s) =>
    api(`/v1/subscriptions/${encodeURIComponent(s.id)}/deliveries?limit=5`).catch(() => ({ data: [] }))));
  const detail = el("section", { class: "detail", id: "subscription-detail" });
  const rows = subs.map((s, n) => {
    const attempts = recent[n].data;
    const failed = attempts.find((a) => a.outcome !== "ok");
    return el("tr", {},
      el("td", { class: "url" }, s.url, s.description ? el("div", { class: "muted" }, s.description) : ""),
      el("td", {}, `events: ${list(s.event_types, "all")}`, el("br"), `schools: ${list(s.school_ids, "all")}`),
      el("td", {}, badge(s.enabled ? "enabled" : "disabled"),
        s.disabled_reason ? el("div", { class: "muted" }, s.disabled_reason) : "",
        s.failing_since ? el("div", { class: "muted" }, "failing since ", ago(s.failing_since)) : ""),
      el("td", { class: "error-text" }, failed ? attemptProblem(failed) : "—"),
      el("td", {}, attempts.length ? attempts.map((a) => badge(a.status_code ?? "err", a.outcome === "ok" ? "ok" : "failing")) : "none"),
      el("td", { class: "actions" },
        button(s.enabled ? "Disable" : "Enable", async () => {
          await api(`/v1/subscriptions/${encodeURIComponent(s.id)}`, { method: "PATCH", body: { enabled: !s.enabled } });
          flash(`Subscription ${s.id} ${s.enabled ? "disabled" : "enabled"}.`);
          await render();
        }),
        button("Rotate secret", async () => {
          const rotated = await api(`/v1/subscriptions/${encodeURIComponent(s.id)}/rotate-secret`, { method: "POST" });
          showSecret(rotated, "The old secret keeps signing alongside for 24 hours.");
        }),
        button("Send test", async () => {
          const t = await api(`/v1/subscriptions/${encodeURIComponent(s.id)}/test`, { method: "POST" });
          await render();
          flash(t.success ? `Test delivered: HTTP ${t.status_code} in ${t.duration_ms.toFixed(0)} ms.`
            : `Test failed: ${t.error || `HTTP ${t.status_code}`}.`, t.success ? "ok" : "error");
        }),
        button("Attempts", () => showAttempts(detail, s))));
  });
  return [
    el("h1", {}, "Subscriptions"),
    createForm(),
    table(["URL", "Filters", "State", "Last error", "Recent attempts", ""], rows, "No subscriptions yet."),
    detail,
  ];
}

const attemptProblem = (a) => a.error || `HTTP ${a.status_code}`;

function createForm() {
  const form = el("form", { class: "create", id: "create-subscription" },
    el("label", {}, "URL", el("input", { name: "url", type: "url", required: true, placeholder: "https://example.org/webhooks/d6" })),
    el("label", {}, "Event types", el("input", { name: "event_types", placeholder: "all, or e.g. debtor.*, learner.created" })),
    el("label", {}, "School ids", el("input", { name: "school_ids", placeholder: "all, or e.g. 1000, 1001" })),
    el("label", {}, "Description", el("input", { name: "description" })),
    el("label", { class: "inline" }, el("input", { name: "ordered", type: "checkbox", checked: true }), "ordered"),
    el("button", { type: "submit" }, "Create subscription"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = { url: f.url.value.trim(), ordered: f.ordered.checked };
    if (f.event_types.value.trim()) body.event_types = commaList(f.event_types.value);
    if (f.school_ids.value.trim()) body.school_ids = commaList(f.school_ids.value).map(Number);
    if (f.description.value.trim()) body.description = f.description.value.trim();
    try {
      const created = await api("/v1/subscriptions", { method: "POST", body });
      await render();
      showSecret(created, "Subscription created.");
    } catch (error) { report(error); }
  });
  return el("details", {}, el("summary", {}, "New subscription"), form);
}

/** The secret, once, above the page (so a re-render keeps it); navigating away or signing out drops it. */
function showSecret(subscription, note) {
  const box = $("secret");
  box.hidden = false;
  box.replaceChildren(
    el("p", {}, `${note} Signing secret for ${subscription.id} (${subscription.url}); it is shown only now:`),
    el("code", { id: "secret-value" }, subscription.secret),
    button("Done", dropSecret));
}

async function showAttempts(detail, s) {
  const id = encodeURIComponent(s.id);
  const [one, page] = await Promise.all([api(`/v1/subscriptions/${id}`), api(`/v1/subscriptions/${id}/deliveries?limit=25`)]);
  detail.replaceChildren(
    el("h2", {}, `Attempts to ${s.url}`),
    el("p", {}, `${one.pending_deliveries ?? 0} pending, ${one.dead_letters ?? 0} dead letters.`),
    table(["Time", "Event", "Attempt", "Outcome", "Answer", "ms"], page.data.map((a) => el("tr", {},
      el("td", {}, ago(a.time)),
      el("td", {}, a.event_type, el("div", { class: "muted mono" }, a.event_id)),
      el("td", { class: "num" }, a.attempt),
      el("td", {}, badge(a.outcome, a.outcome === "ok" ? "ok" : "failing")),
      el("td", { class: a.outcome === "ok" ? "" : "error-text" }, a.error || `HTTP ${a.status_code}`,
        a.response_body ? el("div", { class: "muted mono clip" }, a.response_body) : ""),
      el("td", { class: "num" }, a.duration_ms.toFixed(0)))), "No attempts yet."));
}

// ---- Events ----------------------------------------------------------------------------------

async function events() {
  const detail = el("section", { class: "detail", id: "event-detail" },
    el("p", { class: "muted" }, "Choose an event to see its body and deliveries."));
  const tbody = el("tbody");
  const more = el("p");
  const form = el("form", { class: "filters", id: "event-filters" },
    el("label", {}, "Type", el("select", { name: "type" }, el("option", { value: "" }, "any"),
      EVENT_TYPES.map((t) => el("option", { value: t }, t)))),
    el("label", {}, "School id", el("input", { name: "school_id", type: "number", min: 1 })),
    el("label", {}, "Since", el("input", { name: "since", type: "datetime-local", step: 1 })),
    el("label", {}, "Until", el("input", { name: "until", type: "datetime-local", step: 1 })),
    el("button", { type: "submit" }, "Filter"));
  const iso = (local) => (local ? new Date(local).toISOString() : "");

  async function load(cursor) {
    const f = form.elements;
    const page = await api(`/v1/events?${q({ type: f.type.value, school_id: f.school_id.value,
      since: iso(f.since.value), until: iso(f.until.value), limit: 50, cursor })}`);
    if (!cursor) tbody.replaceChildren();
    tbody.append(...page.data.map((e) => el("tr", {},
      el("td", {}, ago(e.timestamp)),
      el("td", {}, button(e.type, () => showEvent(detail, e.id), { class: "link" })),
      el("td", { class: "num" }, e.school_id),
      el("td", {}, `${e.resource} ${e.resource_id}`),
      el("td", { class: "num" }, e.sequence))));
    if (!tbody.children.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No events match.")));
    more.replaceChildren(page.meta.next_cursor ? button("Older", () => load(page.meta.next_cursor)) : "");
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load(null).catch(report); });
  await load(null);
  return [
    el("h1", {}, "Events"), form,
    el("div", { class: "split" },
      el("div", {}, el("table", { id: "events-table" }, el("thead", {}, el("tr", {},
        ["Time", "Type", "School", "Record", "Seq"].map((h) => el("th", {}, h)))), tbody), more),
      detail),
  ];
}

async function showEvent(detail, id) {
  const { event, deliveries } = await api(`/v1/events/${encodeURIComponent(id)}`);
  detail.replaceChildren(
    el("h2", {}, event.type),
    el("p", { class: "mono" }, event.id),
    button("Redeliver", async () => {
      const result = await api(`/v1/events/${encodeURIComponent(id)}/redeliver`, { method: "POST" });
      const n = result.subscription_ids.length;
      flash(`Event ${id} queued again for ${n} subscription${n === 1 ? "" : "s"}.`);
      await showEvent(detail, id);
    }),
    el("h3", {}, "Deliveries"),
    table(["Subscription", "State", "Tries", "Last answer", "Next try"], deliveries.map((d) => el("tr", {},
      el("td", { class: "mono" }, d.subscription_id, d.subscription_enabled ? "" : " (disabled)"),
      el("td", {}, badge(d.state, d.state === "delivered" ? "ok" : d.state === "dead" ? "dead" : "")),
      el("td", { class: "num" }, d.attempts),
      el("td", { class: d.state === "delivered" ? "" : "error-text" },
        d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "—")),
      el("td", {}, d.next_attempt_at ? el("time", { title: d.next_attempt_at }, d.next_attempt_at) : "—"))),
      "Not queued for any subscription."),
    el("h3", {}, "Body"),
    el("pre", { class: "body" }, JSON.stringify(event, null, 2)));
}

// ---- Dead letters ----------------------------------------------------------------------------

async function deadLetters() {
  const page = await api("/v1/dead-letters?limit=200");
  const boxes = [];
  const rows = page.data.map((d) => {
    const box = el("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}` });
    boxes.push(box);
    return el("tr", {},
      el("td", {}, box),
      el("td", {}, ago(d.dead_at)),
      el("td", { class: "mono" }, d.subscription_id),
      el("td", {}, d.event_type, el("div", { class: "muted mono" }, d.event_id)),
      el("td", { class: "num" }, d.school_id),
      el("td", { class: "num" }, d.attempts),
      el("td", { class: "error-text" }, d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "—")));
  });
  const retry = async (ids) => {
    const result = await api("/v1/dead-letters/retry", { method: "POST", body: ids ? { ids } : {} });
    const n = result.requeued.length;
    await render();
    flash(`Requeued ${n} dead letter${n === 1 ? "" : "s"}.`);
  };
  const all = el("input", { type: "checkbox", "aria-label": "select all",
    onchange: (e) => boxes.forEach((b) => { b.checked = e.target.checked; }) });
  return [
    el("h1", {}, `Dead letters (${page.data.length}${page.meta.next_cursor ? "+" : ""})`),
    el("p", { class: "actions" },
      button("Retry selected", () => {
        const ids = boxes.filter((b) => b.checked).map((b) => b.value);
        if (!ids.length) { flash("Select dead letters to retry first.", "error"); return undefined; }
        return retry(ids);
      }),
      button("Retry all", () => retry(null), { disabled: !page.data.length })),
    page.data.length ? el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, all),
        ["Dead since", "Subscription", "Event", "School", "Attempts", "Last answer"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)) : el("p", { class: "empty" }, "No dead letters."),
  ];
}

// ---- Shell -----------------------------------------------------------------------------------

const PAGES = { overview, schools, subscriptions, events, "dead-letters": deadLetters };

function dropSecret() {
  $("secret").hidden = true;
  $("secret").replaceChildren();
}

function showLogin(message = "") {
  dropSecret();
  $("page").hidden = true;
  $("page").replaceChildren();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("flash").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

async function render() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
  const name = location.hash.slice(1) in PAGES ? location.hash.slice(1) : "overview";
  const mine = ++renderCount;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  for (const link of $("nav").querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    const content = await PAGES[name]();
    if (mine !== renderCount) return; // the operator moved on meanwhile
    $("page").replaceChildren(...content);
    $("page").hidden = false;
    $("page").dataset.page = name;
  } catch (error) { report(error); }
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    render();
  });
  $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
  window.addEventListener("hashchange", () => { $("flash").hidden = true; dropSecret(); render(); });
  setInterval(() => {
    if (document.visibilityState === "visible" && $("page").dataset.page === "overview"
      && (location.hash || "#overview") === "#overview") render();
  }, OVERVIEW_REFRESH_MS);
  render();
}

start();
