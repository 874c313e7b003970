// A run's OpenTelemetry spans as a waterfall: one row per span in tree order, bars on a shared time axis,
// coloured by service; clicking a span shows its attributes.

import { h, replace, s } from "../lib/dom.js";

const ROW = 22;
const LABEL = 300;
const WIDTH = 1000;
const COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#72b7b2", "#eeca3b", "#ff9da6"];

function ordered(spans) {
  const ids = new Set(spans.map((span) => span.span_id));
  const children = new Map();
  for (const span of spans) {
    const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id : null;
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  const rows = [];
  const walk = (parent, depth) => {
    for (const span of (children.get(parent) ?? []).sort((a, b) => a.start_ns - b.start_ns)) {
      rows.push({ span, depth });
      walk(span.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return rows;
}

function ms(ns) {
  const value = ns / 1e6;
  return value < 1000 ? `${value.toFixed(value < 10 ? 2 : 0)} ms` : `${(value / 1000).toFixed(2)} s`;
}

export function waterfall(spans) {
  const rows = ordered(spans);
  const t0 = Math.min(...spans.map((span) => span.start_ns));
  const t1 = Math.max(t0 + 1, ...spans.map((span) => span.end_ns));
  const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * (WIDTH - LABEL - 70);
  const services = [...new Set(spans.map((span) => span.service))].sort();
  const colour = (service) => COLOURS[services.indexOf(service) % COLOURS.length];
  const attributes = h("div", { class: "span-detail", id: "span-detail" });

  const show = (span) =>
    replace(
      attributes,
      h("h3", {}, span.name),
      h("dl", { class: "facts" },
        [["service", span.service], ["cluster", span.cluster ?? ""], ["duration", ms(span.end_ns - span.start_ns)],
          ["status", span.status], ["span", span.span_id], ["trace", span.trace_id],
          ...Object.entries(span.attributes ?? {})].map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]),
      ),
    );

  const height = rows.length * ROW + 24;
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${height}`, width: "100%", role: "img", "aria-label": "trace waterfall" },
    [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const t = t0 + (t1 - t0) * f;
      return [s("line", { class: "tick", x1: x(t), x2: x(t), y1: 14, y2: height }),
        s("text", { class: "tick-label", x: x(t), y: 10, "text-anchor": f === 0 ? "start" : "middle" }, ms(t - t0))];
    }),
    rows.map(({ span, depth }, i) => {
      const y = 20 + i * ROW;
      const left = x(span.start_ns);
      const width = Math.max(2, x(span.end_ns) - left);
      return s("g", { class: "span-row", dataset: { span: span.span_id }, onclick: () => show(span) },
        s("rect", { class: "row-hit", x: 0, y, width: WIDTH, height: ROW }),
        s("text", { class: "span-name", x: 4 + depth * 12, y: y + 15 }, span.name.length > 38 ? span.name.slice(0, 37) + "…" : span.name),
        s("rect", { class: span.status === "error" ? "span-bar error" : "span-bar", x: left, y: y + 4, width, height: ROW - 8, rx: 2, fill: colour(span.service) },
          s("title", {}, `${span.name} (${span.service})\n${ms(span.end_ns - span.start_ns)}`)),
        s("text", { class: "span-time", x: left + width + 4, y: y + 15 }, ms(span.end_ns - span.start_ns)),
      );
    }),
  );
  const legend = h("p", { class: "legend" }, services.map((service) =>
    h("span", { class: "legend-item" }, s("svg", { class: "swatch", width: 10, height: 10 }, s("rect", { width: 10, height: 10, fill: colour(service) })), service)));
  return h("div", { class: "waterfall", id: "waterfall" }, legend, h("div", { class: "svg-wrap" }, svg), attributes);
}
