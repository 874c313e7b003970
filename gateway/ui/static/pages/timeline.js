// A run's actions on a time axis, one lane per cluster; overlapping actions stack in rows within their lane.

import { duration, empty, h, s } from "../lib/dom.js";

const ROW = 18;
const LANE_GAP = 10;
const LABEL = 110;
const WIDTH = 1000;
const MAX_ROWS = 12;
const MAX_BARS = 2000;

export function timeline(actions, run, onSelect) {
  // A worker may report its result before its agent reports the start: then creation is the best start known.
  const all = actions
    .filter((a) => a.started_at || (a.ended_at && a.created_at))
    .map((a) => ({ ...a, started_at: a.started_at ?? a.created_at }));
  if (!all.length) return empty("Nothing has started yet.");
  // A huge fan-out would make an SVG too heavy to redraw each second: draw the earliest bars only.
  const started = all.sort((a, b) => a.started_at - b.started_at).slice(0, MAX_BARS);
  const now = Date.now() / 1000;
  const t0 = Math.min(run.created_at, ...started.map((a) => a.started_at));
  const t1 = Math.max(t0 + 0.001, ...started.map((a) => a.ended_at ?? now));
  const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * (WIDTH - LABEL - 10);

  const byCluster = new Map();
  for (const action of started) {
    const key = action.cluster ?? "unplaced";
    byCluster.set(key, [...(byCluster.get(key) ?? []), action]);
  }
  const parts = [];
  let y = 20;
  for (const [cluster, list] of [...byCluster.entries()].sort()) {
    // Greedy rows: an action goes in the first row whose last bar has ended.
    const rowEnds = [];
    const placed = list.map((action) => {
      const end = action.ended_at ?? now;
      let row = rowEnds.findIndex((e) => e <= action.started_at);
      if (row === -1) row = rowEnds.length < MAX_ROWS ? rowEnds.length : MAX_ROWS - 1;
      rowEnds[row] = Math.max(rowEnds[row] ?? 0, end);
      return { action, row, end };
    });
    const height = rowEnds.length * ROW;
    parts.push(
      s("rect", { class: "lane", x: 0, y: y - 2, width: WIDTH, height: height + 4 }),
      s("text", { class: "lane-label", x: 6, y: y + 13 }, cluster),
    );
    for (const { action, row, end } of placed) {
      const left = x(action.started_at);
      parts.push(
        s("rect", {
          class: `bar phase-${action.phase}`,
          x: left,
          y: y + row * ROW,
          width: Math.max(2, x(end) - left),
          height: ROW - 4,
          rx: 2,
          dataset: { action: action.name },
          onclick: () => onSelect(action.name),
        }, s("title", {}, `${action.task} ${action.name}\n${action.phase}, ${duration(action.started_at, action.ended_at)}`)),
      );
    }
    y += height + LANE_GAP;
  }
  const ticks = [];
  for (let i = 0; i <= 5; i++) {
    const t = t0 + ((t1 - t0) * i) / 5;
    ticks.push(
      s("line", { class: "tick", x1: x(t), x2: x(t), y1: 14, y2: y }),
      s("text", { class: "tick-label", x: x(t), y: 10, "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" },
        `+${duration(t0, t)}`),
    );
  }
  const note = all.length > started.length ? h("p", { class: "muted" }, `The first ${started.length} of ${all.length} actions.`) : null;
  return h("div", { class: "svg-wrap" }, note,
    s("svg", { viewBox: `0 0 ${WIDTH} ${y}`, width: "100%", role: "img", "aria-label": "actions per cluster over time" }, ticks, parts));
}
