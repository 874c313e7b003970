// One run: its action tree with phases, a timeline of actions per cluster, the selected action's inputs, outputs,
// error, logs, report and placement, the run's trace as a waterfall, and an abort button.
//
// Everything live comes from the run's watch stream (a snapshot of its actions, a marker, then each change); the
// run record itself is read again only when its root action changes phase.

import { ApiError, follow, getJSON, getOptional, getText, postJSON } from "../lib/api.js";
import { duration, empty, h, labels, phaseBadge, replace, TERMINAL, when } from "../lib/dom.js";
import { conditionsView } from "./conditions.js";
import { timeline } from "./timeline.js";
import { waterfall } from "./trace.js";

const CHILDREN_SHOWN = 200;

export async function render(root, { run: name, query }) {
  let run;
  try {
    run = await getJSON(`/api/v1/runs/${encodeURIComponent(name)}`);
  } catch (error) {
    replace(root, empty(error instanceof ApiError && error.status === 404 ? `No run named ${name}.` : error.message));
    return;
  }
  const actions = new Map();
  // The deliveries of the run's `flyte.notify` rules, once it has ended (the gateway sends them then).
  let deliveries = [];
  async function loadDeliveries() {
    if (!TERMINAL.has(run.phase)) return;
    deliveries = (await getJSON(`/api/v1/runs/${encodeURIComponent(name)}/notifications`)).deliveries;
    drawHead();
  }
  const view = { tab: query.get("tab") ?? "actions", action: query.get("action") ?? "a0", detail: query.get("detail") ?? "overview" };

  const head = h("div", { class: "run-head" });
  const state = h("span", { class: "stream-state", id: "stream-state" }, "connecting");
  const tabs = h("nav", { class: "tabs" });
  const body = h("div", { class: "tab-body" });
  replace(root, head, tabs, body);

  function setView(change) {
    Object.assign(view, change);
    const params = new URLSearchParams();
    if (view.tab !== "actions") params.set("tab", view.tab);
    if (view.action !== "a0") params.set("action", view.action);
    if (view.detail !== "overview") params.set("detail", view.detail);
    history.replaceState(null, "", `/runs/${name}${params.size ? "?" + params : ""}`);
    draw();
  }

  function drawHead() {
    const live = !TERMINAL.has(run.phase);
    replace(
      head,
      h("div", { class: "page-head" },
        h("h1", {}, "Run ", h("code", {}, run.display_name ?? run.name)),
        phaseBadge(run.phase),
        state,
        live ? h("button", { class: "danger", id: "abort", onclick: abort }, "Abort") : null,
      ),
      h("dl", { class: "facts" },
        fact("Task", h("code", {}, run.task)),
        fact("Version", run.version ?? ""),
        fact("Project", `${run.project}/${run.domain}`),
        fact("Started", when(run.created_at)),
        fact("Duration", duration(run.created_at, run.ended_at)),
        // The run record counts its actions a quarter second behind; the watch has every action as it happens.
        fact("Actions", String(actions.size)),
        Object.keys(run.labels ?? {}).length ? fact("Labels", labels(run.labels)) : null,
        run.abort_reason ? fact("Aborted", run.abort_reason) : null,
        deliveries.length ? fact("Notifications", notifications(deliveries)) : null,
      ),
      run.error ? errorBlock(run.error) : null,
    );
  }

  async function abort() {
    const reason = prompt("Abort this run and all its actions? Reason:", "aborted from the UI");
    if (reason === null) return;
    try {
      run = await postJSON(`/api/v1/runs/${name}/abort`, { reason: reason || "aborted from the UI" });
    } catch (error) {
      alert(error.message);
    }
    drawHead();
  }

  function drawTabs() {
    replace(
      tabs,
      ["actions", "trace"].map((tab) =>
        h("button", { class: view.tab === tab ? "tab active" : "tab", id: `tab-${tab}`, onclick: () => setView({ tab }) },
          tab === "actions" ? "Actions" : "Trace"),
      ),
    );
  }

  const detail = h("section", { class: "detail", id: "detail" });
  const tree = h("section", { class: "tree", id: "tree" });
  const lanes = h("section", { class: "timeline", id: "timeline" });
  const trace = h("section", { class: "trace", id: "trace" });

  function draw() {
    drawHead();
    drawTabs();
    if (view.tab === "trace") {
      // Spans reach the gateway in batches, also after the run's last change: a reload button reads them again.
      replace(body, h("div", { class: "toolbar" }, h("button", { id: "trace-reload", onclick: refreshTrace }, "Reload")), trace);
      if (!trace.hasChildNodes()) replace(trace, empty("Loading the trace…"));
      refreshTrace();
      return;
    }
    replace(body, h("div", { class: "split" }, tree, detail), h("h2", {}, "Timeline"), lanes);
    drawTree();
    drawDetail();
    replace(lanes, timeline([...actions.values()], run, (action) => setView({ action })));
  }

  function drawTree() {
    const children = new Map();
    for (const action of actions.values()) {
      const list = children.get(action.parent ?? null) ?? [];
      list.push(action);
      children.set(action.parent ?? null, list);
    }
    for (const list of children.values()) list.sort((a, b) => (a.created_at ?? 0) - (b.created_at ?? 0));
    const node = (action) => {
      const kids = children.get(action.name) ?? [];
      return h("li", {},
        h("button", {
          class: action.name === view.action ? "node selected" : "node",
          dataset: { action: action.name, phase: action.phase },
          onclick: () => setView({ action: action.name }),
        },
          phaseBadge(action.phase),
          h("span", { class: "task" }, action.task),
          action.group ? h("span", { class: "label" }, action.group) : null,
          h("span", { class: "muted" }, action.name === "a0" ? "root" : action.name.slice(0, 9)),
          action.cluster ? h("span", { class: "cluster" }, action.cluster) : null,
          action.attempts > 1 ? h("span", { class: "attempts" }, `${action.attempts} attempts`) : null,
          action.cached ? h("span", { class: "label" }, "cached") : null,
          h("span", { class: "muted right" }, duration(action.started_at ?? action.created_at, action.ended_at)),
        ),
        kids.length ? h("ul", {}, kids.slice(0, CHILDREN_SHOWN).map(node),
          kids.length > CHILDREN_SHOWN ? h("li", { class: "muted" }, `… ${kids.length - CHILDREN_SHOWN} more`) : null) : null,
      );
    };
    const roots = children.get(null) ?? [];
    replace(tree, roots.length ? h("ul", { class: "root" }, roots.map(node)) : empty("No actions yet."));
  }

  function drawDetail() {
    const action = actions.get(view.action);
    if (!action) {
      replace(detail, empty(actions.size ? `No action ${view.action} in this run.` : "Waiting for the run's actions…"));
      return;
    }
    const sub = h("div", { class: "detail-body", id: `detail-${view.detail}` });
    replace(
      detail,
      h("div", { class: "page-head" }, h("h2", {}, h("code", {}, action.task)), phaseBadge(action.phase)),
      h("nav", { class: "tabs small" },
        ["overview", "logs", "report", "placement"].map((d) =>
          h("button", { class: view.detail === d ? "tab active" : "tab", id: `detail-tab-${d}`, onclick: () => setView({ detail: d }) },
            d[0].toUpperCase() + d.slice(1)),
        ),
      ),
      sub,
    );
    if (view.detail === "logs") drawLogs(sub, action);
    else if (view.detail === "report") drawReport(sub, action);
    else if (view.detail === "placement") drawPlacement(sub, action);
    else drawOverview(sub, action);
  }

  function drawOverview(sub, action) {
    replace(
      sub,
      h("dl", { class: "facts" },
        fact("Action", h("code", {}, action.name)),
        fact("Cluster", action.cluster ?? "not placed"),
        fact("Attempts", String(action.attempts)),
        fact("Started", when(action.started_at)),
        fact("Duration", duration(action.started_at ?? action.created_at, action.ended_at)),
        action.waiting ? fact("Waiting", action.waiting) : null,
        action.user_failures || action.system_failures
          ? fact("Failures", `${action.user_failures} user, ${action.system_failures} system`) : null,
      ),
      h("h3", {}, "Inputs"),
      values(action.inputs),
      h("h3", {}, "Output"),
      action.output ? valueView(action.output) : empty(action.phase === "succeeded" ? "None" : "No output yet."),
      action.error ? [h("h3", {}, "Error"), errorBlock(action.error)] : null,
      conditionsView(name, action),
    );
  }

  let logRequest = 0;
  async function drawLogs(sub, action) {
    const attempt = Math.max(action.attempts, 1);
    const pre = h("pre", { class: "logs", id: "logs" }, "Loading…");
    const picker = h("select", { id: "log-attempt", onchange: () => load(Number(picker.value)) },
      Array.from({ length: attempt }, (_, i) => h("option", { value: i + 1, selected: i + 1 === attempt }, `attempt ${i + 1}`)));
    // Output reaches the gateway in batches, between the action's changes: a reload button fetches what has come.
    const reload = h("button", { id: "log-reload", onclick: () => load(Number(picker.value)) }, "Reload");
    replace(sub, h("div", { class: "toolbar" }, picker, " ", reload), pre);
    async function load(n) {
      const mine = ++logRequest;
      try {
        const text = await getText(`/api/v1/runs/${name}/actions/${action.name}/logs?attempt=${n}`);
        if (mine === logRequest) replace(pre, text || "No output from this attempt (yet).");
      } catch (error) {
        if (mine === logRequest) replace(pre, error.message);
      }
    }
    await load(attempt);
  }

  // The report is the task's own HTML: it is shown in a sandboxed frame (scripts run, in an opaque origin, so they
  // cannot read this page, its cookie or the API), and the gateway serves it with the same sandbox as its CSP.
  async function drawReport(sub, action) {
    const url = `/api/v1/runs/${encodeURIComponent(name)}/actions/${encodeURIComponent(action.name)}/report`;
    replace(sub, empty("Loading…"));
    let status;
    try {
      status = (await fetch(url, { method: "HEAD", credentials: "same-origin" })).status;
    } catch (error) {
      replace(sub, empty(error.message));
      return;
    }
    if (status === 404) {
      replace(sub, empty("No report for this action (yet): a task declared with report=True saves one when it flushes and when an attempt ends."));
      return;
    }
    if (status !== 200) {
      replace(sub, empty(`The report could not be read (HTTP ${status}).`));
      return;
    }
    // Flushes replace the page while the action runs: a reload button shows the latest.
    const frame = h("iframe", { class: "report", id: "report", sandbox: "allow-scripts", src: url, title: `Report of ${action.task}` });
    const reload = h("button", { id: "report-reload", onclick: () => drawReport(sub, action) }, "Reload");
    const open = h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, "Open in a new tab");
    replace(sub, h("div", { class: "toolbar" }, reload, " ", open), frame);
  }

  async function drawPlacement(sub, action) {
    replace(sub, empty("Loading…"));
    let decision;
    try {
      decision = await getOptional(`/api/v1/runs/${name}/actions/${action.name}/placement`);
    } catch (error) {
      replace(sub, empty(error.message));
      return;
    }
    if (!decision) {
      replace(sub, empty("No placement decision is recorded for this action."));
      return;
    }
    const clusters = [...new Set([...Object.keys(decision.verdicts ?? {}), ...Object.keys(decision.scores ?? {})])];
    replace(
      sub,
      h("dl", { class: "facts" },
        fact("Placed on", decision.cluster ?? (decision.never_fits ? "never fits" : "not placed yet")),
        fact("Reason", decision.reason),
        decision.tier ? fact("Tier", decision.tier) : null,
        fact("Attempt", String(decision.attempt)),
        fact("Policy", decision.policy_version),
        fact("Decided", when(decision.decided_at)),
      ),
      h("table", { class: "placement", id: "placement" },
        h("thead", {}, h("tr", {}, h("th", {}, "Cluster"), h("th", {}, "Verdict"), h("th", {}, "Score"))),
        h("tbody", {}, clusters.map((c) =>
          h("tr", { class: c === decision.cluster ? "chosen" : "" },
            h("td", {}, c), h("td", {}, decision.verdicts?.[c] ?? ""),
            h("td", { class: "num" }, c in (decision.scores ?? {}) ? decision.scores[c].toFixed(3) : "")))),
      ),
    );
  }

  // One trace request at a time: changes that arrive meanwhile ask for one more when it is done.
  let traceLoading = false;
  let traceStale = false;
  async function refreshTrace() {
    if (traceLoading) {
      traceStale = true;
      return;
    }
    traceLoading = true;
    try {
      const data = await getOptional(`/api/v1/runs/${name}/trace`);
      replace(trace, data && data.spans?.length ? waterfall(data.spans) : empty("No trace is recorded for this run."));
    } catch (error) {
      replace(trace, empty(error.message));
    } finally {
      traceLoading = false;
      if (traceStale && view.tab === "trace") {
        traceStale = false;
        refreshTrace();
      }
    }
  }

  // Watch changes redraw the tree and the timeline at most once a frame; the detail panel (its logs and placement
  // are requests) only when its own action changed; the trace is read again. Nothing is polled.
  const changed = new Set();
  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const selectedChanged = changed.has(view.action);
      changed.clear();
      drawHead();
      if (view.tab === "trace") {
        refreshTrace();
        return;
      }
      drawTree();
      if (selectedChanged) drawDetail();
      replace(lanes, timeline([...actions.values()], run, (action) => setView({ action })));
    });
  }

  let live = false;
  const stream = follow(`/api/v1/runs/${encodeURIComponent(name)}/watch`, {
    resume: (revision) => `from_revision=${revision + 1}`,
    onState: (text) => replace(state, text),
    async onMessage(message) {
      if (message.type === "reset") actions.clear();
      let rootChanged = false;
      for (const action of message.actions) {
        const before = actions.get(action.name);
        if (before && before.revision > action.revision) continue;
        actions.set(action.name, action);
        changed.add(action.name);
        rootChanged ||= action.name === "a0" && before?.phase !== action.phase;
      }
      if (message.type === "marker") live = true;
      if (rootChanged && live) {
        run = await getJSON(`/api/v1/runs/${encodeURIComponent(name)}`);
        loadDeliveries().catch(() => {});
      }
      if (live) schedule();
    },
  });
  // Running durations and the timeline's "now" move with the clock: redraw the cheap parts each second.
  const tick = setInterval(() => {
    if (!TERMINAL.has(run.phase) && view.tab === "actions") {
      drawHead();
      replace(lanes, timeline([...actions.values()], run, (action) => setView({ action })));
    }
  }, 1000);
  draw();
  loadDeliveries().catch(() => {});
  return () => {
    clearInterval(tick);
    stream.close();
  };
}

function notifications(deliveries) {
  const tone = { delivered: "good", failed: "bad", pending: "warn" };
  return h("ul", { class: "notifications", id: "notifications" }, deliveries.map((d) =>
    h("li", { title: d.error ?? "" }, `${d.kind} to ${d.target}`,
      h("span", { class: `badge ${tone[d.status]}` }, d.status))));
}

function fact(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}

function values(map) {
  const entries = Object.entries(map ?? {});
  if (!entries.length) return empty("None");
  return h("dl", { class: "values" }, entries.map(([key, value]) => [h("dt", {}, key), h("dd", {}, valueView(value))]));
}

function valueView(value) {
  if (value.ref) return h("span", { class: "muted" }, `stored as a blob (${value.kind}): ${value.ref}`);
  if (value.kind === "pickle") {
    return h("span", { class: "muted" }, `a pickled Python value (${Math.round((value.pickle_b64?.length ?? 0) * 0.75)} bytes)`);
  }
  let text = value.json_text ?? "";
  try {
    text = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Shown as sent.
  }
  return h("pre", { class: "value" }, text);
}

function errorBlock(error) {
  return h("div", { class: "error-block", id: "error" },
    h("p", {}, h("strong", {}, error.code), ` (${error.error_type}, ${error.kind} error): `, error.message),
    error.worker ? h("p", { class: "muted" }, `on ${error.worker}`) : null,
    error.traceback ? h("details", { open: true }, h("summary", {}, "Remote traceback"), h("pre", { class: "traceback" }, error.traceback)) : null,
  );
}
