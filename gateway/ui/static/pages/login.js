// The login page: paste a bearer token; the gateway answers with an HttpOnly session cookie.

import { ApiError, postJSON } from "../lib/api.js";
import { h, replace } from "../lib/dom.js";

const REFUSALS = {
  used: "That login link was already used. Ask for a new one, or paste a token.",
  expired: "That login link has expired. Ask for a new one, or paste a token.",
};

export function render(root, { query }) {
  const message = h("p", { class: "error", id: "login-error", role: "alert" }, REFUSALS[query.get("error")] ?? "");
  const input = h("input", {
    type: "password",
    name: "token",
    id: "token",
    autocomplete: "off",
    placeholder: "fft_…",
    required: true,
  });
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (event) => {
        event.preventDefault();
        replace(message);
        try {
          await postJSON("/ui/session", { token: input.value.trim() });
        } catch (error) {
          const text = error instanceof ApiError && error.status === 401 ? "That token is not valid." : error.message;
          replace(message, text);
          return;
        }
        const next = query.get("next");
        // Only a path on this gateway: a login must not bounce the browser elsewhere.
        location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/runs");
      },
    },
    h("h1", {}, "Log in"),
    h("p", {}, "Paste a gateway token (", h("code", {}, "flyte gateway token create --scope run"),
      "), or open a one-time login link (", h("code", {}, "flyte rig login"), " prints one for the local rig)."),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit" }, "Log in"),
    message,
  );
  replace(root, form);
  input.focus();
}
