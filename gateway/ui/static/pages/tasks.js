// Deployed tasks (the latest version of each) and, for one task, every version.

import { ApiError, getJSON } from "../lib/api.js";
import { empty, h, replace, when } from "../lib/dom.js";

function resources(spec) {
  return Object.entries(spec.resources ?? {})
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

export async function render(root, { task }) {
  replace(root, empty("Loading…"));
  try {
    if (task) return await renderVersions(root, task);
    const tasks = await getJSON("/api/v1/tasks");
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
  );
}
