"""A worker's messages as the gateway handles them (`gateway._connections._handle_worker_message`), on the in-memory
store: what each reads, and that the token is still checked on every message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from dispatcher_parts import PROJECT, TASK, Domain, counted_reads, dispatcher, domain, new_run

from flyte._wire import ActionEvent, ActionSubmitRequest, Assignment, GatewayReply, Phase, WorkerReport, WorkerSubmit
from gateway._api import Services
from gateway._auth import AttemptRef, Authenticator, Principal, create_token, revoke_token, token_id
from gateway._connections import SocketPrincipals, _handle_worker_message
from gateway._metrics import Metrics


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


class Worker:
    """Sends messages as one principal and keeps the replies."""

    def __init__(
        self, d: Domain, principal: Principal, authenticator: Authenticator | None = None, *, second: bool = False
    ):
        """`second`: the worker speaks `WORKER_PROTOCOL` (it takes children to run here)."""
        self.d = d
        self.principal = principal
        self.given: list[list[Assignment]] = []
        self.second = second
        self.authenticator = authenticator or Authenticator(d.store, decoded=d.runs.decoded)
        blobs = cast(Any, None)  # no message here touches blobs
        self.svc = Services(d.store, d.runs.registry, d.runs, blobs, Metrics(), set(), set())
        self.replies: list[GatewayReply] = []

    async def send(self, message: WorkerSubmit | WorkerReport) -> GatewayReply:
        async def reply(answer: GatewayReply) -> None:
            self.replies.append(answer)

        principals = SocketPrincipals(self.authenticator, self.principal)
        give = self.given.append if self.second else None
        handled = _handle_worker_message(
            self.svc, dispatcher(self.d), principals, message.model_dump_json(), reply, give
        )
        await handled
        return self.replies[-1]


def child(i: int) -> ActionSubmitRequest:
    return ActionSubmitRequest(name=f"a{i:020x}", parent="a0", task=TASK, version="v1")


async def running_root(d: Domain) -> str:
    run = await new_run(d.runs)
    for phase in (Phase.PLACED, Phase.RUNNING):
        await d.runs.report(run, "a0", ActionEvent(phase=phase, attempt=1, cluster="east", epoch=1))
    return run


def worker_of_root(run: str) -> Principal:
    return Principal(frozenset({f"worker:{run}"}), frozenset({PROJECT}), AttemptRef(PROJECT, run, "a0", 1))


async def test_a_submitted_batch_reads_the_run_and_the_parent_once(d: Domain, monkeypatch: pytest.MonkeyPatch) -> None:
    run = await running_root(d)
    worker = Worker(d, worker_of_root(run))
    reads = counted_reads(d, monkeypatch)
    reply = await worker.send(WorkerSubmit(id=7, run=run, actions=[child(i) for i in range(1, 6)]))
    assert (reply.type, reply.id, len(reply.actions)) == ("submitted", 7, 5)
    # The parent is the token's own action: read once, for the token check and as the children's parent.
    assert (reads[f"/flyte/runs/{run}"], reads[f"/flyte/actions/{run}/a0"]) == (1, 1)
    assert sum(reads.values()) == 2  # no child's name is looked up: its write finds out whether it is taken


async def test_a_report_of_the_token_s_own_attempt_reads_its_action_once_and_not_its_run(
    d: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await running_root(d)
    worker = Worker(d, worker_of_root(run))
    await d.runs.scope_of(run)  # as any earlier message of the run (its submissions) leaves it
    reads = counted_reads(d, monkeypatch)
    event = ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=1)
    reply = await worker.send(WorkerReport(id=8, run=run, action="a0", event=event))
    assert (reply.type, reply.actions[0].phase) == ("reported", Phase.SUCCEEDED)
    assert reads[f"/flyte/actions/{run}/a0"] == 1
    # The root's end writes the run's end: that read is the report's own, not the authorization's.
    assert reads[f"/flyte/runs/{run}"] == 1


async def test_a_worker_of_the_second_protocol_is_not_sent_back_the_action_it_reported(d: Domain) -> None:
    run = await running_root(d)
    event = ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=1)
    reply = await Worker(d, worker_of_root(run), second=True).send(
        WorkerReport(id=9, run=run, action="a0", event=event)
    )
    assert (reply.type, reply.id, reply.actions) == ("reported", 9, [])
    assert (await d.runs.get_action(run, "a0")).phase is Phase.SUCCEEDED


async def test_a_report_of_a_run_never_seen_reads_the_run_for_its_project(d: Domain) -> None:
    run = await running_root(d)
    stranger = Principal(
        frozenset({f"worker:{run}"}), frozenset({"other"}), AttemptRef("other", run, "a0", 1), token_id("x")
    )
    event = ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=1)
    reply = await Worker(d, stranger).send(WorkerReport(id=9, run=run, action="a0", event=event))
    # The run is of another project than the token's: told it does not exist, and nothing changed.
    assert (reply.type, reply.code) == ("error", "not_found")
    assert (await d.runs.get_action(run, "a0")).phase is Phase.RUNNING


async def test_a_token_revoked_while_its_socket_is_open_is_refused_on_the_next_message(d: Domain) -> None:
    run = await running_root(d)
    token = await create_token(d.store, ["admin"])
    authenticator = Authenticator(d.store, decoded=d.runs.decoded)
    principal = await authenticator.principal(f"Bearer {token}")
    worker = Worker(d, principal, authenticator)
    first = await worker.send(WorkerSubmit(id=1, run=run, actions=[child(1)]))
    assert first.type == "submitted"
    await revoke_token(d.store, token_id(token))
    authenticator.forget(token_id(token))
    refused = await worker.send(WorkerSubmit(id=2, run=run, actions=[child(2)]))
    assert (refused.type, refused.code) == ("error", "unauthorized")
    assert len((await d.runs.list_actions(run))[0]) == 2


def test_a_reply_carries_what_the_worker_reads_of_a_child_and_not_its_inputs() -> None:
    from flyte._remote_controller import decode_result
    from flyte._wire import ActionSummary, EncodedValue, WireValue
    from flyte.errors import RuntimeUserError, error_info
    from gateway._connections import worker_reply_json

    value = WireValue.from_encoded(EncodedValue("json", "0" * 64, payload=b'"a large input"' * 1000))
    done = ActionSummary(
        name="a1", parent="a0", task=TASK, phase=Phase.SUCCEEDED, run="r", inputs={"x": value}, output=value
    )
    failed = done.model_copy(
        update={"name": "a2", "phase": Phase.FAILED, "output": None, "error": error_info(RuntimeUserError("E", "no"))}
    )
    text = worker_reply_json(GatewayReply(type="children", run="r", parent="a0", actions=[done, failed]))
    assert len(text) < len(done.model_dump_json()), "the child's inputs stay behind"
    succeeded, refused = GatewayReply.model_validate_json(text).actions
    assert (succeeded.name, succeeded.phase, succeeded.output, succeeded.inputs) == ("a1", Phase.SUCCEEDED, value, {})

    class Decoder:
        def decode(self, encoded: EncodedValue) -> object:
            return encoded

    assert decode_result(Decoder(), succeeded) == value.to_encoded()
    with pytest.raises(RuntimeUserError, match="no"):
        decode_result(Decoder(), refused)
