// Commands: the write-back commands (docs/commands.md), filtered by school and state, each with d6's answer.
// Made through the API only (POST /v1/schools/{id}/notes ...); the console shows how they stand.

import { api, q } from "./api.js";
import { ago, el, problem, shell } from "./dom.js";

/** The filters stay while the console is open. */
const filters = { school_id: "", state: "" };
const STATES = ["queued", "sending", "succeeded", "failed"];

export async function commands() {
  const page = await api(`/v1/commands?${q({ ...filters, limit: 200 })}`);
  const form = el("form", { class: "filters", id: "command-filters" },
    el("label", {}, "School id", el("input", { name: "school_id", type: "number", min: 0, value: filters.school_id })),
    el("label", {}, "State", el("select", { name: "state" }, el("option", { value: "" }, "any"),
      STATES.map((s) => el("option", { value: s, selected: s === filters.state }, s)))),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters.school_id = form.elements.school_id.value.trim();
    filters.state = form.elements.state.value;
    shell.render();
  });
  const rows = page.data.map((c) => el("tr", { "data-command": c.command_id },
    el("td", {}, ago(c.created_at)),
    el("td", {}, c.kind, el("div", { class: "muted mono" }, c.command_id)),
    el("td", { class: "num" }, c.school_id),
    el("td", {}, c.target_id ?? (c.result.note_id ? `note ${c.result.note_id}` : "")),
    el("td", {}, el("span", { class: `badge ${c.state === "failed" ? "failing" : c.state === "succeeded" ? "ok" : ""}` }, c.state),
      c.remark ? el("div", { class: "muted" }, c.remark) : ""),
    el("td", { class: "num" }, c.attempts),
    c.d6 && c.state === "failed"
      ? problem(`${c.d6.status ? `HTTP ${c.d6.status}: ` : ""}${c.d6.message ?? ""}`)
      : el("td", {}, c.d6?.status ? `HTTP ${c.d6.status}` : "")));
  return [
    el("h1", {}, `Commands (${page.data.length}${page.meta.next_cursor ? "+" : ""})`),
    form,
    page.data.length ? el("table", { id: "commands-table" },
      el("thead", {}, el("tr", {}, ["Made", "Kind", "School", "Target", "State", "Attempts", "d6's answer"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)) : el("p", { class: "empty" }, "No commands match."),
  ];
}
