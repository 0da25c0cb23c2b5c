// The console's only way out: the bridge's /v1 API (and /metrics), with the token from this tab.

import { SignedOut, shell } from "./dom.js";

export const TOKEN_KEY = "d6b.admin-token";
export const enc = encodeURIComponent;

export async function request(path, { method = "GET", body } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) { shell.showLogin(); throw new SignedOut("signed out"); }
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    shell.showLogin("The bridge refused this token; enter the admin token again.");
    throw new SignedOut("token refused");
  }
  return response;
}

export async function api(path, options) {
  const response = await request(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: the status line says enough */ }
  if (!response.ok) throw new Error(`${data?.detail || response.statusText} (HTTP ${response.status})`);
  return data;
}

export const q = (params) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) search.set(key, value);
  return search.toString();
};

/** Every item of a list endpoint: its pages of `{data, meta: {next_cursor?}}` one after another. */
export async function everything(path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(`${path}?${q({ ...params, limit: 500, cursor })}`);
    items.push(...page.data);
    cursor = page.meta.next_cursor;
  } while (cursor);
  return items;
}

let catalogue = null;
/** The event types (GET /v1/event-types), read once per page load. */
export async function eventTypes() {
  catalogue = catalogue || everything("/v1/event-types");
  try { return await catalogue; } catch (error) { catalogue = null; throw error; }
}

/** Prometheus text to a Map of `name{labels}` -> number. */
export async function metrics() {
  const response = await request("/metrics");
  const values = new Map();
  for (const line of (await response.text()).split("\n")) {
    const match = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match && !line.startsWith("#")) values.set(match[1], Number(match[2]));
  }
  return values;
}
