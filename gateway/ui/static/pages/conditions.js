// The conditions (`flyte.new_condition`) of one action, with a form for each that waits: yes/no buttons for a bool,
// a field for a number or text. The gateway checks the value's type; its refusal is shown under the form.

import { getJSON, postJSON } from "../lib/api.js";
import { empty, h, replace, when } from "../lib/dom.js";

export function conditionsView(run, action) {
  const box = h("div", { class: "conditions", id: "conditions" }, empty("Loading conditions…"));
  load(box, run, action);
  return box;
}

async function load(box, run, action) {
  let all;
  try {
    all = await getJSON(`/api/v1/runs/${encodeURIComponent(run)}/conditions`);
  } catch (error) {
    replace(box, empty(error.message));
    return;
  }
  const mine = all.filter((c) => c.action === action.name);
  if (!mine.length) {
    box.remove();
    return;
  }
  replace(box, h("h3", {}, "Conditions"), mine.map((c) => conditionView(box, run, action, c)));
}

function conditionView(box, run, action, condition) {
  const head = h("p", {}, h("code", {}, condition.name), ` (${condition.data_type}) `, h("strong", {}, condition.state));
  const prompt = h("p", { class: "prompt" }, condition.prompt);
  if (condition.state === "signalled") {
    return h("div", { class: "condition" }, head, prompt, h("p", {}, "Value: ", h("code", {}, JSON.stringify(condition.value))));
  }
  if (condition.state !== "waiting") return h("div", { class: "condition" }, head, prompt);
  const problem = h("p", { class: "error", id: `condition-error-${condition.name}` });
  async function send(value) {
    try {
      await postJSON(`/api/v1/runs/${encodeURIComponent(run)}/conditions/${encodeURIComponent(condition.name)}/signal`, {
        value,
        action: action.name,
      });
      load(box, run, action);
    } catch (error) {
      replace(problem, error.message);
    }
  }
  let form;
  if (condition.data_type === "bool") {
    form = h("div", { class: "toolbar" },
      h("button", { id: `condition-yes-${condition.name}`, onclick: () => send(true) }, "Yes"), " ",
      h("button", { id: `condition-no-${condition.name}`, onclick: () => send(false) }, "No"));
  } else {
    const numeric = condition.data_type !== "str";
    const input = h("input", { id: `condition-value-${condition.name}`, type: numeric ? "number" : "text", step: "any" });
    const submit = (event) => {
      event.preventDefault();
      // A number field's text becomes a JSON number; the gateway refuses 2.5 for an int, as it should.
      send(numeric && input.value.trim() !== "" && !Number.isNaN(Number(input.value)) ? Number(input.value) : input.value);
    };
    form = h("form", { class: "toolbar", onsubmit: submit }, input, " ", h("button", { type: "submit" }, "Signal"));
  }
  const due = condition.deadline ? h("p", {}, `Times out ${when(condition.deadline)}`) : null;
  return h("div", { class: "condition" }, head, prompt, due, form, problem);
}
