// Events: search the log (by type, school, time, event id or one record) and open one; the event types.

import { api, enc, eventTypes as catalogue, q } from "./api.js";
import { ago, badge, button, el, flash, ifAdmin, isoOf, plural, pretty, problem, report, table } from "./dom.js";

export async function events() {
  const types = await catalogue();
  const resources = [...new Set(types.map((t) => t.resource))];
  const detail = el("section", { class: "detail", id: "event-detail" },
    el("p", { class: "muted" }, "Choose an event to see its body and deliveries."));
  const tbody = el("tbody");
  const more = el("p");
  const form = el("form", { class: "filters", id: "event-filters" },
    el("label", {}, "Type", el("select", { name: "type" }, el("option", { value: "" }, "any"),
      types.map((t) => el("option", { value: t.name }, t.name)))),
    el("label", {}, "School id", el("input", { name: "school_id", type: "number", min: 1 })),
    el("label", {}, "Since", el("input", { name: "since", type: "datetime-local", step: 1 })),
    el("label", {}, "Until", el("input", { name: "until", type: "datetime-local", step: 1 })),
    el("label", {}, "Resource", el("select", { name: "resource" }, el("option", { value: "" }, "any"),
      resources.map((r) => el("option", { value: r }, r)))),
    el("label", {}, "Record id", el("input", { name: "resource_id", placeholder: "e.g. 51" })),
    el("label", {}, "Event id", el("input", { name: "event_id", placeholder: "evt_..." })),
    el("button", { type: "submit" }, "Search"));

  const row = (e) => el("tr", {},
    el("td", {}, ago(e.timestamp)),
    el("td", {}, button(e.type, () => showEvent(detail, e.id), { class: "link" })),
    el("td", { class: "num" }, e.school_id),
    el("td", {}, `${e.resource} ${e.resource_id}`),
    el("td", { class: "num" }, e.sequence));

  async function load(cursor) {
    const f = form.elements;
    const id = f.event_id.value.trim();
    if (id) {
      const found = await api(`/v1/events/${enc(id)}`).catch(() => null);
      tbody.replaceChildren(...(found ? [row(found.event)] : []));
      more.replaceChildren();
      if (found) await showEvent(detail, found.event.id);
    } else {
      const page = await api(`/v1/events?${q({ type: f.type.value, school_id: f.school_id.value,
        since: isoOf(f.since.value), until: isoOf(f.until.value), resource: f.resource.value,
        resource_id: f.resource_id.value.trim(), limit: 50, cursor })}`);
      if (!cursor) tbody.replaceChildren();
      tbody.append(...page.data.map(row));
      more.replaceChildren(page.meta.next_cursor ? button("Older", () => load(page.meta.next_cursor)) : "");
    }
    if (!tbody.children.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No events match.")));
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
  const { event, deliveries } = await api(`/v1/events/${enc(id)}`);
  detail.replaceChildren(
    el("h2", {}, event.type),
    el("p", { class: "mono" }, event.id),
    ...ifAdmin(button("Redeliver", async () => {
      const result = await api(`/v1/events/${enc(id)}/redeliver`, { method: "POST" });
      flash(`Event ${id} queued again for ${plural(result.subscription_ids.length, "subscription")}.`);
      await showEvent(detail, id);
    })),
    el("h3", {}, "Deliveries"),
    table(["Subscription", "State", "Tries", "Last answer", "Next try"], deliveries.map((d) => el("tr", {},
      el("td", { class: "mono" }, d.subscription_id, d.subscription_enabled ? "" : " (disabled)"),
      el("td", {}, badge(d.state, d.state === "delivered" ? "ok" : d.state === "dead" ? "dead" : "")),
      el("td", { class: "num" }, d.attempts),
      d.state === "delivered" ? el("td", {}, d.last_status ? `HTTP ${d.last_status}` : "")
        : problem(d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "")),
      el("td", {}, d.next_attempt_at ? el("time", { title: d.next_attempt_at }, d.next_attempt_at) : "—"))),
    "Not queued for any subscription."),
    el("h3", {}, "Body"),
    el("pre", { class: "body" }, pretty(event)));
}

export async function eventTypes() {
  const types = await catalogue();
  return [
    el("h1", {}, `Event types (${types.length})`),
    el("p", { class: "hint" }, "Every type the bridge sends, with the JSON Schema of its body and an example; "
      + "the same as GET /v1/event-types and the webhooks section of /schema/openapi.json."),
    table(["Type", "Resource", "When", ""], types.map((t) => el("tr", { "data-type": t.name },
      el("td", { class: "mono" }, t.name),
      el("td", {}, t.resource),
      el("td", {}, t.description),
      el("td", {}, el("details", {}, el("summary", {}, "Example and schema"),
        el("h4", {}, "Example"), el("pre", { class: "body example" }, pretty(t.example)),
        el("h4", {}, "JSON Schema"), el("pre", { class: "body schema" }, pretty(t.schema)))))),
    "No event types.", { id: "event-types-table" }),
  ];
}
