// d6 bridge operator console: the shell (sign-in, navigation, read-only mode), the overview and the schools.
// One module a page (subscriptions.js, events.js, dead-letters.js, commands.js), helpers in dom.js and
// api.js; no dependencies, no build step, only the /v1 API. Every value from d6 or a subscriber reaches the page as text.

import { TOKEN_KEY, api, everything, metrics, q } from "./api.js";
import { commands } from "./commands.js";
import { deadLetters } from "./dead-letters.js";
import { $, ago, badge, button, dropSecret, el, flash, ifAdmin, problem, report, shell, svg, table } from "./dom.js";
import { eventTypes, events } from "./events.js";
import { subscriptions } from "./subscriptions.js";

const HOUR_MS = 3600_000;
const MAX_CHART_PAGES = 10; // 10 pages of 500: the chart shows at most 5,000 events an hour exactly
const OVERVIEW_REFRESH_MS = 15_000;
let renderCount = 0;

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
    problem(s.last_error
      ? [s.last_error, " ", ago(s.last_error_at), s.consecutive_failures ? ` (${s.consecutive_failures}×)` : ""]
      : ""),
    el("td", { class: "num" }, s.learners ?? "—"),
    el("td", { class: "num" }, s.debtors ?? "—"),
    el("td", { class: "num" }, `${s.lag_seconds.toFixed(0)} s`),
    el("td", { class: "feeds" }, (s.feeds ?? []).map(feedLine)),
    el("td", {}, s.state === "active" ? ifAdmin(button("Poll now", async () => {
      await api(`/v1/schools/${s.school_id}/poll`, { method: "POST" });
      flash(`Poll of school ${s.school_id} queued.`);
    })) : "")));
  return [
    el("h1", {}, "Schools"),
    table(["ID", "Name", "State", "Integrations", "Last good poll", "Last error", "Learners", "Debtors",
      "Lag", "Feeds", ""], rows, "No schools yet: the bridge has not seen any integration."),
  ];
}

/** One watched resource of a school: records, how often it is polled (the plan's interval when the d6 budget
 * binds), its estimated change rate, lag and last good poll; its error while it fails. */
function feedLine(f) {
  const every = f.planned_interval_seconds ?? f.interval_seconds;
  const rate = f.change_rate_per_hour == null ? "" : ` · ${f.change_rate_per_hour.toFixed(2)} changes/h`;
  return el("div", { class: `feed${f.consecutive_failures ? " failing" : ""}`, "data-resource": f.resource },
    el("strong", {}, f.resource), ` ${f.records ?? "—"} · every ${Math.round(every)} s${rate}`
      + ` · lag ${f.lag_seconds.toFixed(0)} s · `, ago(f.last_successful_poll),
    f.consecutive_failures && f.last_error ? el("div", { class: "error-text" }, f.last_error) : "");
}

// ---- Shell -----------------------------------------------------------------------------------

const PAGES = {
  overview, schools, subscriptions, events, "dead-letters": deadLetters, commands, "event-types": eventTypes,
};

/** What the token may do (GET /v1/whoami): asked once per sign-in; a bridge without it means admin. */
let role = null;

function showLogin(message = "") {
  role = null;
  dropSecret();
  $("page").hidden = true;
  $("page").replaceChildren();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("role").hidden = true;
  $("flash").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

async function render() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
  const name = location.hash.slice(1) in PAGES ? location.hash.slice(1) : "overview";
  const mine = ++renderCount;
  try {
    if (role === null) {
      role = await api("/v1/whoami").then((who) => who.role, (error) => {
        if (/HTTP 404/.test(error.message)) return "admin";
        throw error;
      });
    }
    shell.canChange = role === "admin";
    $("login").hidden = true;
    $("nav").hidden = false;
    $("sign-out").hidden = false;
    $("role").hidden = shell.canChange;
    for (const link of $("nav").querySelectorAll("a")) {
      if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const content = await PAGES[name]();
    if (mine !== renderCount) return; // the operator moved on meanwhile
    $("page").replaceChildren(...content);
    $("page").hidden = false;
    $("page").dataset.page = name;
  } catch (error) { report(error); }
}

function start() {
  shell.render = render;
  shell.showLogin = showLogin;
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    role = null;
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
