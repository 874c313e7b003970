// Clusters: region, cloud, capacity and use, warm pools, health, cordon and drain; kept live by the clusters stream.

import { follow } from "../lib/api.js";
import { ago, empty, h, labels, replace } from "../lib/dom.js";

function amount(resource, value) {
  if (resource === "memory") {
    const gib = value / 2 ** 30;
    return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(value / 2 ** 20)} MiB`;
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function usage(cluster) {
  const rows = Object.entries(cluster.capacity ?? {}).map(([resource, capacity]) => {
    const free = cluster.free?.[resource] ?? capacity;
    const used = Math.max(0, capacity - free);
    const share = capacity > 0 ? Math.min(1, used / capacity) : 0;
    return h("tr", {},
      h("th", {}, resource),
      h("td", {}, h("meter", { min: 0, max: 1, value: share, title: `${Math.round(share * 100)}% used` })),
      h("td", { class: "num" }, `${amount(resource, used)} / ${amount(resource, capacity)} used`),
    );
  });
  return rows.length ? h("table", { class: "usage" }, rows) : empty("No capacity reported.");
}

function health(cluster) {
  const badges = [];
  if (cluster.connected === false && "connected" in cluster) badges.push(["disconnected", "bad"]);
  badges.push(cluster.healthy ? ["healthy", "good"] : ["unhealthy", "bad"]);
  if (cluster.draining) badges.push(["draining", "warn"]);
  else if (cluster.cordoned) badges.push(["cordoned", "warn"]);
  return badges.map(([text, tone]) => h("span", { class: `badge ${tone}` }, text));
}

function card(cluster) {
  const warm = Object.entries(cluster.warm ?? {});
  return h("article", { class: "cluster", dataset: { cluster: cluster.name } },
    h("header", {}, h("h2", {}, cluster.name), health(cluster)),
    h("dl", { class: "facts" },
      h("dt", {}, "Region"), h("dd", {}, cluster.region),
      h("dt", {}, "Cloud"), h("dd", {}, cluster.cloud),
      h("dt", {}, "Registered"), h("dd", {}, ago(cluster.last_heartbeat)),
      h("dt", {}, "Epoch"), h("dd", {}, String(cluster.epoch)),
      cluster.cordoned ? [h("dt", {}, "Cordoned"), h("dd", {}, cluster.cordon_reason ?? "")] : null,
      cluster.cost_per_cpu_hour ? [h("dt", {}, "Cost"), h("dd", {}, `$${cluster.cost_per_cpu_hour}/cpu-h, $${cluster.cost_per_gpu_hour ?? 0}/gpu-h`)] : null,
      Object.keys(cluster.labels ?? {}).length ? [h("dt", {}, "Labels"), h("dd", {}, labels(cluster.labels))] : null,
    ),
    h("h3", {}, "Capacity"),
    usage(cluster),
    h("h3", {}, "Warm pools"),
    warm.length
      ? h("table", { class: "warm" }, h("tr", {}, h("th", {}, "environment@version"), h("th", {}, "free slots")),
        warm.map(([pool, slots]) => h("tr", {}, h("td", {}, h("code", {}, pool)), h("td", { class: "num" }, slots))))
      : empty("No warm pools."),
  );
}

export function render(root) {
  const clusters = new Map();
  const state = h("span", { class: "stream-state", id: "stream-state" }, "connecting");
  const grid = h("div", { class: "clusters", id: "clusters" });
  replace(root, h("div", { class: "page-head" }, h("h1", {}, "Clusters"), state), grid);
  const draw = () =>
    replace(grid, clusters.size
      ? [...clusters.values()].sort((a, b) => a.name.localeCompare(b.name)).map(card)
      : empty("No cluster has registered. Start an agent: flyte agent serve --gateway URL --cluster NAME …"));
  const stream = follow("/api/v1/watch/clusters", {
    onState: (text) => replace(state, text),
    onMessage(message) {
      if (message.type === "reset") clusters.clear();
      for (const cluster of message.clusters ?? []) clusters.set(cluster.name, cluster);
      for (const name of message.removed ?? []) clusters.delete(name);
      if (message.type !== "snapshot") draw();
    },
  });
  return () => stream.close();
}
