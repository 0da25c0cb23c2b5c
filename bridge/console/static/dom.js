// The console's DOM helpers and shared state. Every value from d6 or a subscriber reaches the page through
// el() as a text node or an attribute value; nothing is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** What the pages share with the shell: how to draw the page again, and whether this token may change. */
export const shell = { render: async () => {}, showLogin: () => {}, canChange: true };

export class SignedOut extends Error {}

/** An element: props are attributes (on* are listeners); children are nodes or text. */
export function el(tag, props = {}, ...children) {
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

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

export function table(headings, rows, empty, props = {}) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el("table", props,
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

export const badge = (text, kind = text) => el("span", { class: `badge ${kind}` }, text);

export function ago(iso) {
  if (!iso) return el("span", { class: "muted" }, "never");
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const text = seconds < 90 ? `${seconds} s ago` : seconds < 5400 ? `${Math.round(seconds / 60)} min ago`
    : seconds < 129600 ? `${Math.round(seconds / 3600)} h ago` : `${Math.round(seconds / 86400)} d ago`;
  return el("time", { datetime: iso, title: iso }, text);
}

export function flash(message, kind = "ok") {
  const node = $("flash");
  node.className = kind;
  node.textContent = message;
  node.hidden = false;
}

export function report(error) {
  if (!(error instanceof SignedOut)) flash(error.message || String(error), "error");
}

/** A button that is disabled while its action runs; errors become the flash message. */
export function button(label, onclick, props = {}) {
  return el("button", {
    type: "button", ...props, onclick: async (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      try { await onclick(event); } catch (error) { report(error); } finally { target.disabled = false; }
    },
  }, label);
}

/** Only for a token that may change things (the read-only one sees none of these). */
export const ifAdmin = (...nodes) => (shell.canChange ? nodes : []);

/** A cell for an error: red text when there is one, a quiet "none" when there is not. */
export const problem = (text, props = {}) => (text
  ? el("td", { ...props, class: "error-text" }, text)
  : el("td", { ...props, class: "muted" }, "none"));

export const list = (values, all) => (values && values.length ? values.join(", ") : all);
export const commaList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
export const pretty = (value) => JSON.stringify(value, null, 2);
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A datetime-local input's value as RFC 3339 (UTC), or "" when empty. */
export const isoOf = (local) => (local ? new Date(local).toISOString() : "");

/** A Date as a datetime-local input's value (local time, to the second). */
export function localInput(date) {
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`
    + `T${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** The secret, once, above the page (so a re-render keeps it); navigating away or signing out drops it. */
export function showSecret(subscription, note) {
  const box = $("secret");
  box.hidden = false;
  box.replaceChildren(
    el("p", {}, `${note} Signing secret for ${subscription.id} (${subscription.url ?? "pull feed"}); it is shown only now:`),
    el("code", { id: "secret-value" }, subscription.secret),
    button("Done", dropSecret));
}

export function dropSecret() {
  $("secret").hidden = true;
  $("secret").replaceChildren();
}
