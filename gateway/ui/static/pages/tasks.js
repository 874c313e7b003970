// Deployed tasks (the latest version of each) and, for one task, every version.

import { ApiError, getJSON } from "../lib/api.js";
import { empty, h, replace, when } from "../lib/dom.js";

function resources(spec) {
  return Object.entries(spec.resources ?? {})
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function schedule(automation) {
  if (automation.kind === "cron") {
    return automation.timezone === "UTC" ? `cron ${automation.expression}` : `cron ${automation.expression} (${automation.timezone})`;
  }
  return `every ${automation.interval_minutes} min`;
}

// The triggers (schedules) of the latest deployed tasks: what fires, when next, and the last run it started.
function triggersTable(triggers) {
  return h("table", { class: "tasks", id: "triggers" },
    h("thead", {}, h("tr", {}, ["Trigger", "Task", "Schedule", "State", "Next", "Last fired", "Last run"].map((t) => h("th", {}, t)))),
    h("tbody", {}, triggers.map((t) => h("tr", { dataset: { trigger: `${t.task}/${t.name}` } },
      h("td", { title: t.description }, t.name),
      h("td", {}, h("a", { href: `/tasks/${t.task}` }, t.task)),
      h("td", {}, h("code", {}, schedule(t.automation))),
      h("td", {}, h("span", { class: `badge ${t.active ? "good" : "warn"}` }, t.active ? "active" : "inactive"),
        t.last_error ? h("span", { class: "badge bad", title: t.last_error }, "error") : ""),
      h("td", {}, t.active ? when(t.next_at) : ""),
      h("td", {}, when(t.last_fired_at)),
      h("td", {}, t.last_run ? h("a", { href: `/runs/${t.last_run}` }, t.last_run) : ""),
    ))),
  );
}

export async function render(root, { task }) {
  replace(root, empty("Loading…"));
  try {
    if (task) return await renderVersions(root, task);
    const [tasks, triggers] = await Promise.all([getJSON("/api/v1/tasks"), getJSON("/api/v1/triggers")]);
    tasks.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    replace(root,
      h("div", { class: "page-head" }, h("h1", {}, "Tasks"), h("span", { class: "muted" }, `${tasks.length} deployed`)),
      tasks.length
        ? h("table", { class: "tasks", id: "tasks" },
          h("thead", {}, h("tr", {}, ["Task", "Signature", "Latest version", "Deployed", "Resources"].map((t) => h("th", {}, t)))),
          h("tbody", {}, tasks.map((t) => h("tr", { dataset: { task: t.spec.name } },
            h("td", {}, h("a", { href: `/tasks/${t.spec.name}` }, t.spec.name)),
            h("td", {}, h("code", {}, t.spec.signature)),
            h("td", {}, h("code", {}, t.version)),
            h("td", {}, when(t.deployed_at)),
            h("td", {}, resources(t.spec)),
          ))))
        : empty("No tasks are deployed. Deploy with `flyte deploy FILE ENV`."),
      h("h2", {}, "Triggers"),
      triggers.length ? triggersTable(triggers) : empty("No task has a trigger. Add `triggers=` to `@env.task`."),
    );
  } catch (error) {
    replace(root, empty(error.message));
  }
}

async function renderVersions(root, task) {
  let versions;
  try {
    versions = await getJSON(`/api/v1/tasks/${encodeURIComponent(task)}/versions`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return replace(root, empty(`No task named ${task}.`));
    throw error;
  }
  versions.reverse();
  const triggers = (await getJSON("/api/v1/triggers")).filter((t) => t.task === task);
  replace(root,
    h("div", { class: "page-head" }, h("h1", {}, h("code", {}, task)), h("a", { href: "/tasks" }, "all tasks")),
    h("p", {}, h("a", { href: `/runs?task=${encodeURIComponent(task)}` }, "Runs of this task")),
    h("table", { class: "tasks", id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "Deployed", "Signature", "Retries", "Timeout", "Resources", "Cache"].map((t) => h("th", {}, t)))),
      h("tbody", {}, versions.map((v) => h("tr", {},
        h("td", {}, h("code", {}, v.version)),
        h("td", {}, when(v.deployed_at)),
        h("td", {}, h("code", {}, v.spec.signature)),
        h("td", { class: "num" }, v.spec.retries),
        h("td", {}, v.spec.timeout_seconds ? `${v.spec.timeout_seconds} s` : ""),
        h("td", {}, resources(v.spec)),
        h("td", {}, v.spec.cache?.behavior ?? ""),
      ))),
    ),
    triggers.length ? [h("h2", {}, "Triggers"), triggersTable(triggers)] : "",
  );
}
