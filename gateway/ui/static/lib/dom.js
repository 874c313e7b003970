// Small DOM helpers: build elements, format times and phases. No framework: pages re-render what changed.

const SVG_NS = "http://www.w3.org/2000/svg";

// h("div", {class: "x", onclick: fn}, child, "text", [more children]) -> an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

// The same for SVG elements (the timeline and the waterfall).
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return fill(el, {}, children);
}

export function phaseBadge(phase) {
  return h("span", { class: `phase phase-${phase}`, "data-phase": phase }, phase);
}

export const TERMINAL = new Set(["succeeded", "failed", "aborted"]);

export function when(seconds) {
  if (!seconds) return "";
  const date = new Date(seconds * 1000);
  return date.toLocaleString(undefined, { hour12: false });
}

export function duration(start, end) {
  if (!start) return "";
  const total = Math.max(0, (end ?? Date.now() / 1000) - start);
  if (total < 1) return `${Math.round(total * 1000)} ms`;
  if (total < 60) return `${total.toFixed(1)} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(total % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function ago(seconds) {
  if (!seconds) return "never";
  return `${duration(seconds, Date.now() / 1000)} ago`;
}

export function labels(map) {
  return Object.entries(map ?? {}).map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`));
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}
