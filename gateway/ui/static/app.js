// The UI's entry point: client-side routing between pages, and the session badge in the header.
//
// Every page module exports `render(root, params)` and may return a cleanup function (closing its streams).
// Links within the UI are intercepted and handled with history.pushState, so pages switch without reloads.

import { postJSON } from "./lib/api.js";
import { h, replace } from "./lib/dom.js";

const ROUTES = [
  [/^\/(runs)?$/, () => import("./pages/runs.js"), "runs"],
  [/^\/runs\/(?<run>[^/]+)$/, () => import("./pages/run.js"), "runs"],
  [/^\/clusters$/, () => import("./pages/clusters.js"), "clusters"],
  [/^\/tasks(\/(?<task>[^/]+))?$/, () => import("./pages/tasks.js"), "tasks"],
  [/^\/login$/, () => import("./pages/login.js"), null],
];

let cleanup = null;
let routed = 0;

// Each navigation renders into a view of its own, and only the latest one stays: a page still loading when the user
// moves on (its module, or an async render's first fetch) must neither draw over the page that replaced it nor keep
// its streams open. Right after logging in, a click on "Clusters" used to be overwritten by the runs page it left.
async function route() {
  const mine = ++routed;
  const root = document.getElementById("page");
  if (cleanup) cleanup();
  cleanup = null;
  for (const [pattern, load, nav] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === nav);
    }
    const page = await load();
    if (mine !== routed) return;
    const params = { ...(match.groups ?? {}), query: new URLSearchParams(location.search) };
    for (const key of Object.keys(params)) {
      if (typeof params[key] === "string") params[key] = decodeURIComponent(params[key]);
    }
    const view = h("div", { class: "view" });
    replace(root, view);
    const close = (await page.render(view, params)) ?? null;
    if (mine !== routed) {
      if (close) close();
      return;
    }
    cleanup = close;
    return;
  }
  replace(root, h("p", { class: "empty" }, `No page at ${location.pathname}.`));
}

export function navigate(url) {
  history.pushState(null, "", url);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || link.target || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/ui/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", route);

async function showSession() {
  const badge = document.getElementById("session");
  if (location.pathname === "/login") return replace(badge);
  const response = await fetch("/ui/session", { credentials: "same-origin" });
  if (!response.ok) return replace(badge);
  const session = await response.json();
  replace(
    badge,
    h("span", { class: "muted" }, session.scopes.join(", ")),
    " ",
    h("button", {
      class: "link",
      onclick: async () => {
        await postJSON("/ui/logout", {});
        location.assign("/login");
      },
    }, "Log out"),
  );
}

route();
showSession();
