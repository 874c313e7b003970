"""`flyte.run` in remote mode: deploy the task's environments, create the run, and follow it.

The environments the task needs (its own and everything it depends on) are deployed together at one version,
a digest of their bundles and settings, so children of the run resolve to exactly the code that started it and
re-running unchanged code deploys nothing new. The returned `RemoteRun` follows the run through the gateway's
watch stream.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable, Iterator
from typing import Any

from ._client import GatewayBlobs, GatewayClient, GatewayError, call_sync, client_for
from ._codec import reset_blob_backend, use_blob_backend
from ._config import current_config
from ._deploy import Deployment, _closure, _deploy_remote, _settings_text, code_bundle
from ._interface import EncodedInputs
from ._naming import digest_text
from ._remote_task import RemoteTask
from ._retrying import RetryDelay
from ._run_state import RunOptions
from ._task import TaskTemplate
from ._wire import ActionSummary, CloseCode, Phase, RunCreateRequest, RunSummary, WatchMessage, WireValue
from .errors import from_info

_RECONNECT_FIRST = 0.1
_RECONNECT_MAX = 5.0
"""Seconds between attempts to reach the gateway again while following a run: doubling, capped."""


def start_remote(
    task: TaskTemplate[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: RunOptions
) -> RemoteRun:
    inputs = _encode_inputs(task, args, kwargs, options.project)
    envs = _closure((task.env,))
    bundles = [(env, code_bundle(env)) for env in envs]
    version = options.version or digest_text(*(f"{b.digest}:{_settings_text(env)}" for env, b in bundles))
    deployments = [
        Deployment(env, version, bundle, tuple(t.name for t in env.tasks.values())) for env, bundle in bundles
    ]
    call_sync(_deploy_remote(deployments))
    client = client_for()
    return _create_run(client, task, version, inputs, options, client.project, client.domain)


def start_deployed(task: RemoteTask, args: tuple[Any, ...], kwargs: dict[str, Any], options: RunOptions) -> RemoteRun:
    """A run of a task version already in the registry: nothing is deployed, the inputs are checked by its spec."""
    inputs = _encode_inputs(task, args, kwargs, options.project or task.project)
    return _create_run(client_for(), task, task.version, inputs, options, task.project, task.domain)


def _encode_inputs(
    task: TaskTemplate[..., Any] | RemoteTask, args: tuple[Any, ...], kwargs: dict[str, Any], project: str | None
) -> EncodedInputs:
    """The run's inputs in wire form; large values go to the gateway's blob store, as blobs of the run's project."""
    config = current_config()
    assert config.endpoint is not None
    token = use_blob_backend(GatewayBlobs(config.endpoint, config.api_key, project or config.project))
    try:
        return task.interface.encode_inputs(task.interface.bind(args, kwargs))
    finally:
        reset_blob_backend(token)


def _create_run(
    client: GatewayClient,
    task: TaskTemplate[..., Any] | RemoteTask,
    version: str,
    inputs: EncodedInputs,
    options: RunOptions,
    project: str,
    domain: str,
) -> RemoteRun:
    request = RunCreateRequest(
        project=options.project or project,
        domain=options.domain or domain,
        task=task.name,
        version=version,
        name=options.name,
        inputs={k: WireValue.from_encoded(v) for k, v in inputs.values.items()},
        labels=dict(options.labels),
        custom_context=dict(options.custom_context),
        overwrite_cache=options.overwrite_cache,
        disable_run_cache=options.disable_run_cache,
        max_wait_seconds=options.max_wait_seconds,
        notifications=list(options.notifications),
    )
    return RemoteRun(client, call_sync(client.create_run(request)), task)


class RemoteRun:
    """A handle on a run in the gateway: the same surface as a local `Run`."""

    def __init__(self, client: GatewayClient, summary: RunSummary, task: TaskTemplate[..., Any] | RemoteTask):
        self._client = client
        self._summary = summary
        self._task = task

    @property
    def name(self) -> str:
        return self._summary.shown_name

    @property
    def _id(self) -> str:
        """The run's identity at the gateway (the name, unless one was chosen: names are per project)."""
        return self._summary.name

    @property
    def url(self) -> str:
        return f"{self._client.endpoint}/runs/{self._id}"

    @property
    def phase(self) -> Phase:
        if not self._summary.phase.is_terminal:
            self._summary = call_sync(self._client.get_run(self._id))
        return self._summary.phase

    def done(self) -> bool:
        return self.phase.is_terminal

    def wait(self, timeout: float | None = None, on_change: Callable[[ActionSummary], None] | None = None) -> None:
        """Follow the run until it ends; raise its error if it failed or was aborted."""
        if not self._summary.phase.is_terminal:
            call_sync(asyncio.wait_for(self._follow(on_change), timeout))
        if self._summary.error is not None:
            raise from_info(self._summary.error)

    async def _follow(self, on_change: Callable[[ActionSummary], None] | None) -> None:
        import aiohttp

        revision = 0
        retry = RetryDelay(_RECONNECT_FIRST, _RECONNECT_MAX)
        while True:
            # Without a progress callback only the root matters: the gateway then sends nothing else.
            endpoint = self._client.endpoint
            url = f"{endpoint}/api/v1/runs/{self._id}/watch?" + ("action=a0&" if on_change is None else "")
            if revision:
                url += f"from_revision={revision + 1}"
            try:
                async with self._client._http().ws_connect(url, heartbeat=15.0) as ws:
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        retry.reset()
                        update = WatchMessage.model_validate_json(message.data)
                        revision = max(revision, update.revision)
                        for action in update.actions:
                            if on_change is not None:
                                on_change(action)
                            if action.name == "a0" and action.phase.is_terminal:
                                self._summary = await self._client.get_run(self._id)
                                if self._summary.phase.is_terminal:
                                    return
                if ws.close_code in (CloseCode.STORE_UNAVAILABLE, aiohttp.WSCloseCode.GOING_AWAY):
                    # This replica cannot follow its store now, or is shutting down: another one may.
                    self._client.replicas.fail_over(endpoint)
            except aiohttp.ClientError:
                # Resumed from the last revision seen, on another replica if there is one.
                self._client.replicas.fail_over(endpoint)
            # The stream ended before the run did (a replica going away, a store failing): look, then resume.
            try:
                self._summary = await self._client.get_run(self._id)
            except GatewayError as error:
                # A gateway restarting, or without its store for a while, answers 503 or not at all: follow on.
                if error.status != 503:
                    raise
            if self._summary.phase.is_terminal:
                return
            await retry.sleep()

    def outputs(self) -> tuple[Any, ...]:
        from ._run import RunOutputs

        self.wait()
        output = self._summary.output
        if output is None:
            return RunOutputs(())
        interface = self._task.interface
        token = use_blob_backend(GatewayBlobs(self._client.endpoint, current_config().api_key))
        try:
            return RunOutputs(interface.as_outputs(interface.output_codec.decode(output.to_encoded())))
        finally:
            reset_blob_backend(token)

    def inputs(self) -> dict[str, Any]:
        from ._interface import EncodedInputs

        encoded = EncodedInputs.of({k: v.to_encoded() for k, v in self._summary.inputs.items()})
        return self._task.interface.decode_inputs(encoded)

    def abort(self, reason: str = "aborted by the user") -> None:
        self._summary = call_sync(self._client.abort_run(self._id, reason))

    def watch(self) -> Iterator[ActionSummary]:
        yield from call_sync(self._client.list_actions(self._id))

    def __repr__(self) -> str:
        return f"RemoteRun(name={self.name!r}, url={self.url!r})"

    def _repr_html_(self) -> str:
        return (
            f"<div class='flyte-run'><b>Run</b> <code>{html.escape(self.name)}</code> &mdash; "
            f"{html.escape(self._task.name)} &mdash; <b>{self._summary.phase.value}</b> "
            f"<a href='{html.escape(self.url)}'>{html.escape(self.url)}</a></div>"
        )
