// Runs, newest first, filtered by phase, task and label; kept live by the gateway's runs stream.

import { follow } from "../lib/api.js";
import { duration, empty, h, labels, phaseBadge, replace, when } from "../lib/dom.js";

const PHASES = ["", "queued", "placed", "running", "succeeded", "failed", "aborted"];
const LIMIT = 100;

export function render(root, { query }) {
  const filter = {
    phase: query.get("phase") ?? "",
    task: query.get("task") ?? "",
    label: query.get("label") ?? "",
  };
  // Another project or domain than the gateway's default one comes from the URL (?project=&domain=).
  const scope = Object.fromEntries(["project", "domain"].filter((k) => query.get(k)).map((k) => [k, query.get(k)]));
  const runs = new Map();
  const state = h("span", { class: "stream-state", id: "stream-state" }, "connecting");
  const body = h("tbody");
  const table = h(
    "table",
    { class: "runs", id: "runs" },
    h("thead", {}, h("tr", {}, ["Run", "Task", "Phase", "Started", "Duration", "Labels"].map((t) => h("th", {}, t)))),
    body,
  );
  const counter = h("span", { class: "muted" });

  function matches(run) {
    if (filter.phase && run.phase !== filter.phase) return false;
    if (filter.task && run.task !== filter.task) return false;
    if (filter.label) {
      const [key, value] = filter.label.split("=");
      if ((run.labels ?? {})[key] !== value) return false;
    }
    return true;
  }

  function draw() {
    const rows = [...runs.values()].sort((a, b) => b.created_at - a.created_at).slice(0, LIMIT);
    replace(counter, `${rows.length} run${rows.length === 1 ? "" : "s"}`);
    if (!rows.length) {
      replace(body, h("tr", {}, h("td", { colspan: 6 }, empty("No runs match. Start one with `flyte run FILE TASK`."))));
      return;
    }
    replace(
      body,
      rows.map((run) =>
        h(
          "tr",
          { dataset: { run: run.name } },
          h("td", {}, h("a", { href: `/runs/${run.name}` }, run.display_name ?? run.name)),
          h("td", {}, h("code", {}, run.task)),
          h("td", {}, phaseBadge(run.phase)),
          h("td", {}, when(run.created_at)),
          h("td", {}, duration(run.created_at, run.ended_at)),
          h("td", {}, labels(run.labels)),
        ),
      ),
    );
  }

  let stream = null;
  function start() {
    stream?.close();
    runs.clear();
    const params = new URLSearchParams({ ...scope, limit: String(LIMIT) });
    for (const [key, value] of Object.entries(filter)) if (value) params.set(key, value);
    stream = follow(`/api/v1/watch/runs?${params}`, {
      onState: (text) => replace(state, text),
      onMessage(message) {
        if (message.type === "reset") runs.clear();
        for (const run of message.runs ?? []) {
          if (matches(run)) runs.set(run.name, run);
          else runs.delete(run.name);
        }
        for (const name of message.removed ?? []) runs.delete(name);
        if (message.type !== "snapshot") draw();
      },
    });
  }

  const phase = h("select", { name: "phase", id: "filter-phase" }, PHASES.map((p) => h("option", { value: p, selected: p === filter.phase }, p || "any phase")));
  const task = h("input", { name: "task", id: "filter-task", placeholder: "env.task", value: filter.task });
  const label = h("input", { name: "label", id: "filter-label", placeholder: "key=value", value: filter.label });
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit(event) {
        event.preventDefault();
        Object.assign(filter, { phase: phase.value, task: task.value.trim(), label: label.value.trim() });
        const params = new URLSearchParams({ ...scope, ...Object.fromEntries(Object.entries(filter).filter(([, v]) => v)) });
        history.replaceState(null, "", `/runs${params.size ? "?" + params : ""}`);
        start();
      },
    },
    phase,
    task,
    label,
    h("button", { type: "submit" }, "Filter"),
  );
  phase.addEventListener("change", () => form.requestSubmit());

  replace(root, h("div", { class: "page-head" }, h("h1", {}, "Runs"), counter, state), form, table);
  start();
  // Durations of running runs grow with the clock: redraw each second (no requests).
  const tick = setInterval(draw, 1000);
  return () => {
    clearInterval(tick);
    stream.close();
  };
}
