// Dead letters: filtered by subscription and school, each with its subscription's URL; retry some or all.

import { api, everything, q } from "./api.js";
import { ago, button, el, flash, ifAdmin, plural, problem, shell } from "./dom.js";

/** The filters stay while the console is open, so a retry's re-render keeps them. */
const filters = { subscription_id: "", school_id: "" };

export async function deadLetters() {
  const [subs, page] = await Promise.all([
    everything("/v1/subscriptions"),
    api(`/v1/dead-letters?${q({ ...filters, limit: 200 })}`),
  ]);
  const form = el("form", { class: "filters", id: "dead-letter-filters" },
    el("label", {}, "Subscription", el("select", { name: "subscription_id" }, el("option", { value: "" }, "any"),
      subs.map((s) => el("option", { value: s.id, selected: s.id === filters.subscription_id }, `${s.url ?? "pull feed"} (${s.id})`)))),
    el("label", {}, "School id", el("input", { name: "school_id", type: "number", min: 0, value: filters.school_id })),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters.subscription_id = form.elements.subscription_id.value;
    filters.school_id = form.elements.school_id.value.trim();
    shell.render();
  });

  const boxes = [];
  const retrySelected = button("Retry selected", () => retry(boxes.filter((b) => b.checked).map((b) => b.value)),
    { disabled: true });
  const selectionChanged = () => { retrySelected.disabled = !boxes.some((b) => b.checked); };
  const rows = page.data.map((d) => {
    const box = el("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}`, onchange: selectionChanged });
    boxes.push(box);
    return el("tr", {},
      ...ifAdmin(el("td", {}, box)),
      el("td", {}, ago(d.dead_at)),
      el("td", { class: "url" }, d.subscription_url ?? "(removed)", el("div", { class: "muted mono" }, d.subscription_id)),
      el("td", {}, d.event_type, el("div", { class: "muted mono" }, d.event_id)),
      el("td", { class: "num" }, d.school_id),
      el("td", { class: "num" }, d.attempts),
      problem(d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "")));
  });
  const retry = async (ids) => {
    const result = await api("/v1/dead-letters/retry", { method: "POST", body: ids ? { ids } : everyShown() });
    await shell.render();
    flash(`Requeued ${plural(result.requeued.length, "dead letter")}.`);
  };
  /** "Retry all" under a filter retries what the filter shows: its subscription's, or the listed ones. */
  const everyShown = () => (filters.school_id ? { ids: page.data.map((d) => d.id) }
    : filters.subscription_id ? { subscription_id: filters.subscription_id } : {});
  const all = el("input", { type: "checkbox", "aria-label": "select all",
    onchange: (e) => { boxes.forEach((b) => { b.checked = e.target.checked; }); selectionChanged(); } });
  const filtered = filters.subscription_id || filters.school_id;
  return [
    el("h1", {}, `Dead letters (${page.data.length}${page.meta.next_cursor ? "+" : ""})`),
    form,
    ...ifAdmin(el("p", { class: "actions" }, retrySelected,
      button(filtered ? "Retry all shown" : "Retry all", () => retry(null), { disabled: !page.data.length }))),
    page.data.length ? el("table", { id: "dead-letters-table" },
      el("thead", {}, el("tr", {}, ...ifAdmin(el("th", {}, all)),
        ["Dead since", "Subscription", "Event", "School", "Attempts", "Last answer"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)) : el("p", { class: "empty" }, filtered ? "No dead letters match." : "No dead letters."),
  ];
}
