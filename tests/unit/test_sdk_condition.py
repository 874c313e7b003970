"""`flyte.new_condition` in local mode: Flyte 2's signature and checks, the value read from the terminal (asked
once, even across a retry), a clear error without a terminal, and the timeout."""

from __future__ import annotations

import io
import sys
import threading
from datetime import timedelta

import pytest

import flyte
from flyte._condition import parse_text
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_condition")
ATTEMPTS: list[int] = []


class Terminal(io.StringIO):
    """A stdin that says it is a terminal; `hold` makes it wait for a line that never comes."""

    def __init__(self, text: str = "", hold: bool = False):
        super().__init__(text)
        self.hold = threading.Event() if hold else None
        self.asked = 0

    def isatty(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        self.asked += 1
        if self.hold is not None:
            self.hold.wait(10)
        return super().readline()


@env.task(retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01)))
async def add(x: int) -> int:
    more = await flyte.new_condition.aio("more", prompt="How many more?", data_type=int)
    value = await more.wait.aio()
    tc = flyte.ctx()
    assert tc is not None
    ATTEMPTS.append(tc.attempt)
    if tc.attempt == 1:
        raise RuntimeError("fail once after the answer")
    return x + value


@env.task
def approve() -> bool:
    return bool(flyte.new_condition("ok", data_type=bool, timeout=timedelta(seconds=0.3)).wait())


def test_the_terminal_answers_once_even_across_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal("many\n41\n")
    monkeypatch.setattr(sys, "stdin", terminal)
    run = flyte.run(add, 1)
    assert run.phase is Phase.SUCCEEDED
    assert run.outputs() == (42,)
    assert ATTEMPTS == [1, 2]
    assert terminal.asked == 2, "'many' was asked again as an int; the retry was not asked at all"


def test_without_a_terminal_the_wait_fails_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    run = flyte.run(approve)
    with pytest.raises(flyte.errors.ConditionFailedError, match="stdin is not one") as failed:
        run.wait()
    assert "flyte signal condition" in str(failed.value)


def test_an_unanswered_condition_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal(hold=True)
    monkeypatch.setattr(sys, "stdin", terminal)
    try:
        run = flyte.run(approve)
    finally:
        assert terminal.hold is not None
        terminal.hold.set()
    with pytest.raises(flyte.errors.ConditionTimedOutError, match=r"was not signalled within 0\.3 seconds"):
        run.wait()


def test_flyte2_checks_and_outside_a_task() -> None:
    condition = flyte.new_condition("plain", prompt="Go?", timeout=5)
    assert (condition.name, condition.data_type, condition.timeout_seconds) == ("plain", bool, 5.0)
    with pytest.raises(RuntimeError, match="only be awaited within a task"):
        condition.wait()
    with pytest.raises(TypeError, match="data_type"):
        flyte.new_condition("bad", data_type=list)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="timeout"):
        flyte.new_condition("bad", timeout=0)
    with pytest.raises(ValueError, match="ConditionWebhook"):
        flyte.ConditionWebhook("ftp://example.com/hook")
    # Outside a task (and in local runs) a webhook is accepted and nothing is sent.
    hooked = flyte.new_condition("hook", webhook=flyte.ConditionWebhook("https://example.com/hook", {"a": 1}))
    assert hooked.webhook == flyte.ConditionWebhook("https://example.com/hook", {"a": 1})


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [("bool", "Yes", True), ("bool", "0", False), ("int", "-3", -3), ("float", "2.5", 2.5), ("str", " x", " x")],
)
def test_text_is_read_as_the_condition_type(kind: str, text: str, value: object) -> None:
    parsed = parse_text("c", kind, text)
    assert (parsed, type(parsed)) == (value, type(value))


def test_text_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"condition 'c' takes a int; '2\.5' is not one"):
        parse_text("c", "int", "2.5")
