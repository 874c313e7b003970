"""The gateway: the control plane's one API. It holds deployed task versions and runs, places every action on a
cluster's agent, and serves the HTTP API, the UI, and the agent and worker WebSockets (`flyte gateway serve`; the app
is built in `gateway._app`, its state lives in a `gateway.store`). See docs/architecture.md for its parts."""
