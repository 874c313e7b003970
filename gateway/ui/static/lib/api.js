// The gateway's JSON API and its live streams, as the pages use them.
//
// Auth rides on the session cookie the login set (HttpOnly: this code never sees the token). A 401 anywhere sends
// the browser to the login page, which comes back here afterwards.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !path.startsWith("/ui/")) toLogin();
  if (!response.ok) {
    let error = { code: "http_" + response.status, message: response.statusText };
    try {
      error = await response.json();
    } catch {
      // Not JSON (a proxy's page, say): keep the status line.
    }
    throw new ApiError(response.status, error.code, error.message);
  }
  return response;
}

export async function getJSON(path) {
  return (await request("GET", path)).json();
}

export async function getText(path) {
  return (await request("GET", path)).text();
}

export async function postJSON(path, body) {
  return (await request("POST", path, body)).json();
}

// A JSON resource that may not exist (yet): null on 404, so a page can show an empty state.
export async function getOptional(path) {
  try {
    return await getJSON(path);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
    throw error;
  }
}

// Follow one of the gateway's watch streams: snapshot messages, a marker, then changes.
//
// `resume(lastRevision)` gives the query to reconnect with (the run watch resumes from a revision; the runs and
// clusters streams start over with a fresh snapshot). Reconnects back off from 0.5 s to 10 s. Returns a handle
// whose close() stops it.
export function follow(path, { onMessage, onState = () => {}, resume = () => "" }) {
  let socket = null;
  let closed = false;
  let revision = 0;
  let delay = 500;

  function open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = revision ? resume(revision) : "";
    const sep = path.includes("?") ? "&" : "?";
    socket = new WebSocket(`${scheme}//${location.host}${path}${query ? sep + query : ""}`);
    socket.onopen = () => {
      delay = 500;
      onState("live");
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      revision = Math.max(revision, message.revision ?? 0);
      onMessage(message);
    };
    socket.onclose = (event) => {
      if (closed) return;
      // The server refuses an unauthenticated upgrade with a 401 before any open: check the session once.
      if (event.code === 1006 && revision === 0) {
        fetch("/ui/session", { credentials: "same-origin" }).then((r) => r.status === 401 && toLogin());
      }
      onState("reconnecting");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  }

  open();
  return {
    close() {
      closed = true;
      socket?.close();
    },
  };
}
