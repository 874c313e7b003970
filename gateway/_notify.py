"""Notifications: when a run ends, the gateway sends what its `flyte.notify` rules ask for, apart from the run.

A run created with rules (`with_runcontext(notifications=...)`, or a trigger's) has them under
`/flyte/notify-rules/{run}` (not in its record, which every reader of the project sees: webhook URLs are secrets).
The notifier follows the run records' watch; when a run with rules ends in a phase a rule names, it writes the
run's deliveries (`/flyte/notifications/{run}`, a `RunNotifications`, all `pending`) with a compare-and-swap, sends
each one in a task of its own, retrying failures (connection errors, 429 and 5xx) with `RetryDelay`, and records
each outcome. Nothing here touches the run: a slow or failing receiver never holds it up. Once every delivery is
final the rules key is deleted, so the pass at startup, which resumes pending deliveries after a restart, reads only
the unfinished ones. Delivery is at least once: a crash between sending and recording sends again.

The same component sends conditions' webhooks (`flyte.new_condition(webhook=ConditionWebhook(...))`): the gateway
writes one under `/flyte/condition-hooks/...` in the transaction that creates the condition; the notifier posts it
(retried the same way) and deletes it, also after a restart.

Channels: `Webhook` (any method, headers, a JSON body), `Slack` and `Teams` (their incoming-webhook JSON), `Email`
(SMTP, `flyte gateway serve --smtp-url smtp://[user:password@]host[:port] --smtp-from ADDRESS`; `smtps://` for TLS).
Texts take Flyte 2's template variables: `{{.Run.Name}}`, `{{.Run.Project}}`, `{{.Run.Domain}}`, `{{.Run.Task}}`,
`{{.Phase}}`, `{{.Error}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import smtplib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web
from pydantic import BaseModel

from flyte._retrying import RetryDelay
from flyte._wire import (
    ConditionHookDelivery,
    EmailRule,
    NotificationDelivery,
    NotificationRule,
    NotifyPhase,
    Phase,
    RunNotifications,
    RunSummary,
    SlackRule,
    TeamsRule,
    WebhookRule,
)
from gateway._api import SERVICES, Route, _json, services, visible_run
from gateway._keys import CONDITION_HOOKS, NOTIFY_RULES, RUNS, deliveries_key, notify_rules_key, run_key
from gateway._runs import decode_run
from gateway.store import Compacted, Compare, Delete, EventType, KeyValue, Put, Store, StoreError, WatchEvent

log = logging.getLogger("flyte.gateway.notify")

SEND_TIMEOUT = 10.0


class _Rules(BaseModel):
    notifications: list[NotificationRule]


class PermanentFailure(Exception):
    """The receiver refused the notification (a 4xx other than 429): sending it again would not help."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where email notifications go out: `smtp://[user:password@]host[:port]` (or `smtps://`), and the From."""

    url: str
    sender: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"smtp url {self.url!r} must be smtp://[user:password@]host[:port] or smtps://...")
        if "@" not in self.sender:
            raise ValueError(f"smtp sender {self.sender!r} must be an email address")


# -- what a rule sends -----------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\{\{\s*\.([A-Za-z.]+)\s*\}\}")


def run_phase(run: RunSummary) -> NotifyPhase | None:
    """The run's phase as rules name it (a run failed by its timeout is `timed_out`); None while it runs."""
    if run.phase is Phase.SUCCEEDED:
        return "succeeded"
    if run.phase is Phase.ABORTED:
        return "aborted"
    if run.phase is Phase.FAILED:
        return "timed_out" if run.error is not None and run.error.error_type == "TaskTimeoutError" else "failed"
    return None


def render(template: Any, run: RunSummary, phase: str) -> Any:
    """`template` with Flyte 2's variables filled in, in every string of a JSON value; unknown ones stay."""
    if isinstance(template, str):
        values = {
            "Run.Name": run.shown_name,
            "Run.Project": run.project,
            "Run.Domain": run.domain,
            "Run.Task": run.task,
            "Phase": phase.upper(),
            "Error": run.error.message if run.error is not None else "",
        }
        return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if isinstance(template, dict):
        return {key: render(value, run, phase) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, run, phase) for value in template]
    return template


def target(rule: NotificationRule) -> str:
    """Where a rule sends, fit to show anyone who reads the run: webhook paths and queries carry secrets."""
    if isinstance(rule, EmailRule):
        return ", ".join(rule.recipients)
    return origin(rule.url if isinstance(rule, WebhookRule) else rule.webhook_url)


def origin(url: str) -> str:
    """A URL's scheme and host, without credentials, path or query (which may carry secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _request(
    rule: SlackRule | TeamsRule | WebhookRule, run: RunSummary, phase: str
) -> tuple[str, str, Any, dict[str, str]]:
    if isinstance(rule, SlackRule):
        body: Any = (
            {"blocks": render(rule.blocks, run, phase)} if rule.blocks else {"text": render(rule.message, run, phase)}
        )
        return "POST", rule.webhook_url, body, {}
    if isinstance(rule, TeamsRule):
        if rule.card is not None:
            card = {"contentType": "application/vnd.microsoft.card.adaptive", "content": render(rule.card, run, phase)}
            return "POST", rule.webhook_url, {"type": "message", "attachments": [card]}, {}
        title, text = render(rule.title, run, phase), render(rule.message or "", run, phase)
        return "POST", rule.webhook_url, {"@type": "MessageCard", "title": title, "text": text}, {}
    return rule.method, render(rule.url, run, phase), render(rule.body, run, phase), render(rule.headers, run, phase)


def _email(rule: EmailRule, run: RunSummary, phase: str, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(rule.recipients)
    if rule.cc:
        message["Cc"] = ", ".join(rule.cc)
    message["Subject"] = render(rule.subject, run, phase)
    message.set_content(render(rule.body, run, phase))
    if rule.html_body is not None:
        message.add_alternative(render(rule.html_body, run, phase), subtype="html")
    return message


# -- the component ---------------------------------------------------------------------------------------------


class Notifier:
    """Follows run records and delivers the notifications of those that end; `start`/`stop` run it."""

    def __init__(
        self,
        store: Store,
        smtp: SmtpSettings | None = None,
        *,
        attempts: int = 6,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
        events: Counter[str] | None = None,
    ):
        self._store = store
        self._events: Counter[str] = Counter() if events is None else events
        """`/metrics` counters: notifications_delivered, notifications_failed, condition_webhooks_delivered and
        condition_webhooks_failed."""
        self._smtp = smtp
        self._attempts = attempts
        self._delays = (first_delay, max_delay)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._hooks_task: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._task is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT))
            self._task = asyncio.create_task(self._follow(), name="notifier")
            self._hooks_task = asyncio.create_task(self._follow_hooks(), name="condition-hooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._hooks_task, *self._sending.values()) if t is not None]
        self._task = self._hooks_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _follow(self) -> None:
        await self._watch("notifications", RUNS, self._resume, self._on_run)

    def _on_run(self, event: WatchEvent) -> None:
        run = decode_run(KeyValue(event.key, event.value, 0, event.mod_revision, 0))
        if run.phase.is_terminal:
            self._consider(run.name)

    async def _watch(
        self, what: str, prefix: str, start: Callable[[], Awaitable[int]], on_put: Callable[[WatchEvent], None]
    ) -> None:
        """`start()` (which picks up what is pending and answers the revision it read at), then `on_put` for each
        later write under `prefix`; again from `start()` after a compaction or a store failure."""
        delay = RetryDelay(*self._delays)
        while True:
            try:
                revision = await start()
                async for events in self._store.watch(prefix, revision + 1):
                    delay.reset()
                    for event in events:
                        if event.type is EventType.PUT:
                            on_put(event)
                return
            except (Compacted, StoreError) as error:
                log.warning("%s: re-reading after %s", what, error)
                await delay.sleep()
            except Exception:
                # A bug here must not end these sends for the gateway's lifetime: start over from a fresh read.
                log.exception("%s: following the store failed; re-reading", what)
                await delay.sleep()

    async def _resume(self) -> int:
        """Pick up every run with rules that has ended and is not done (deliveries pending after a restart)."""
        kvs, revision = await self._store.range(NOTIFY_RULES)
        for kv in kvs:
            self._consider(kv.key[len(NOTIFY_RULES) :])
        return revision

    def _consider(self, run: str) -> None:
        self._once(run, lambda: self._deliver(run))

    def _once(self, key: str, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `send()` unless a send for `key` (a run name, or a condition webhook's store key) is under way."""
        if key not in self._sending:
            task = asyncio.create_task(send(), name=f"notify {key}")
            self._sending[key] = task
            task.add_done_callback(lambda _: self._sending.pop(key, None))

    async def _deliver(self, name: str) -> None:
        try:
            rules_kv = await self._store.get(notify_rules_key(name))
            if rules_kv is None:
                return  # no rules, or all sent
            run_kv = await self._store.get(run_key(name))
            if run_kv is None:  # deleted (retention) before it was notified: nothing to send any more
                await self._store.txn([Compare(rules_kv.key, rules_kv.mod_revision)], [Delete(rules_kv.key)])
                return
            run = decode_run(run_kv)
            phase = run_phase(run)
            if phase is None:
                return
            rules = _Rules.model_validate_json(rules_kv.value).notifications
            record = await self._deliveries(name, rules, phase)
            await asyncio.gather(
                *(self._send(run, rules[d.rule], d) for d in record.deliveries if d.status == "pending")
            )
            await self._store.txn([Compare(rules_kv.key, rules_kv.mod_revision)], [Delete(rules_kv.key)])
        except StoreError as error:
            log.warning("notifications of %s: %s (retried when the gateway next starts)", name, error)

    async def _deliveries(self, run: str, rules: list[NotificationRule], phase: NotifyPhase) -> RunNotifications:
        key = deliveries_key(run)
        made = RunNotifications(
            run=run,
            deliveries=[
                NotificationDelivery(rule=i, kind=rule.kind, target=target(rule), phase=phase, status="pending")
                for i, rule in enumerate(rules)
                if phase in rule.on_phase
            ],
        )
        result = await self._store.txn([Compare(key, 0)], [Put(key, made.model_dump_json().encode())])
        if result.succeeded:
            return made
        existing = result.current.get(key)
        return made if existing is None else RunNotifications.model_validate_json(existing.value)

    async def _send(self, run: RunSummary, rule: NotificationRule, delivery: NotificationDelivery) -> None:
        attempts, error = await self._with_retries(
            lambda: self._send_once(run, rule, delivery.phase),
            delivery.attempts,
            f"notification {delivery.rule} of {run.name}",
        )
        self._events["notifications_delivered" if error is None else "notifications_failed"] += 1
        done = delivery.model_copy(
            update={
                "status": "delivered" if error is None else "failed",
                "attempts": attempts,
                "error": error,
                "delivered_at": self._clock() if error is None else None,
            }
        )
        await self._record(run.name, done)

    async def _with_retries(
        self, send: Callable[[], Awaitable[None]], attempts: int, what: str
    ) -> tuple[int, str | None]:
        """Call `send` until it succeeds, is refused for good, or has been tried `attempts`-many times in all;
        failures that may pass (connection errors, 429, 5xx) wait a growing `RetryDelay`. (attempts, error)."""
        delay = RetryDelay(*self._delays)
        error: str | None = None
        while attempts < self._attempts:
            attempts += 1
            try:
                await send()
            except PermanentFailure as refused:
                return attempts, str(refused)
            except (aiohttp.ClientError, TimeoutError, OSError, smtplib.SMTPException) as failure:
                error = f"{type(failure).__name__}: {failure}"
                log.info("%s failed (attempt %d): %s", what, attempts, error)
                if attempts < self._attempts:
                    await delay.sleep()
                continue
            return attempts, None
        return attempts, error

    async def _send_once(self, run: RunSummary, rule: NotificationRule, phase: str) -> None:
        if isinstance(rule, EmailRule):
            if self._smtp is None:
                raise PermanentFailure("this gateway has no SMTP settings (flyte gateway serve --smtp-url)")
            recipients = [*rule.recipients, *rule.cc, *rule.bcc]
            message = _email(rule, run, phase, self._smtp.sender)
            await asyncio.to_thread(_send_mail, self._smtp, message, recipients)
            return
        method, url, body, headers = _request(rule, run, phase)
        await self._http(method, url, body, headers, target(rule))

    async def _http(self, method: str, url: str, body: Any, headers: dict[str, str], shown: str) -> None:
        """One request; a refusal that retrying will not change raises `PermanentFailure` (`shown`: the target)."""
        assert self._session is not None
        async with self._session.request(method, url, json=body, headers=headers) as response:
            if response.status < 300:
                return
            text = (await response.text())[:200]
            if response.status == 429 or response.status >= 500:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text or response.reason or ""
                )
            raise PermanentFailure(f"{response.status} from {shown}: {text}")

    # -- condition webhooks ----------------------------------------------------------------------------------

    async def _follow_hooks(self) -> None:
        """Send each condition's webhook (`/flyte/condition-hooks/...`, written when the condition is created)."""
        await self._watch(
            "condition webhooks", CONDITION_HOOKS, self._resume_hooks, lambda e: self._consider_hook(e.key)
        )

    async def _resume_hooks(self) -> int:
        kvs, revision = await self._store.range(CONDITION_HOOKS)
        for kv in kvs:
            self._consider_hook(kv.key)
        return revision

    def _consider_hook(self, key: str) -> None:
        self._once(key, lambda: self._send_hook(key))

    async def _send_hook(self, key: str) -> None:
        try:
            kv = await self._store.get(key)
            if kv is None:
                return
            hook = ConditionHookDelivery.model_validate_json(kv.value)
            shown = origin(hook.url)
            send = functools.partial(self._http, "POST", hook.url, hook.body, {}, shown)
            _, error = await self._with_retries(send, hook.attempts, f"condition webhook {key}")
            self._events["condition_webhooks_delivered" if error is None else "condition_webhooks_failed"] += 1
            if error is not None:
                log.warning("condition webhook %s to %s failed for good: %s", key, shown, error)
            # Sent or given up: at least once, as notifications (a crash before this line sends again).
            await self._store.txn([Compare(key, kv.mod_revision)], [Delete(key)])
        except StoreError as error:
            log.warning("condition webhook %s: %s (retried when the gateway next leads)", key, error)

    async def _record(self, run: str, done: NotificationDelivery) -> None:
        key = deliveries_key(run)
        for _ in range(10):
            kv = await self._store.get(key)
            if kv is None:
                return
            record = RunNotifications.model_validate_json(kv.value)
            deliveries = [done if d.rule == done.rule else d for d in record.deliveries]
            changed = record.model_copy(update={"deliveries": deliveries})
            result = await self._store.txn(
                [Compare(key, kv.mod_revision)], [Put(key, changed.model_dump_json().encode())]
            )
            if result.succeeded:
                return


def _send_mail(smtp: SmtpSettings, message: EmailMessage, recipients: list[str]) -> None:
    """Blocking (smtplib): run in a thread. Bcc recipients are among `recipients` and named nowhere in the mail."""
    parts = urlsplit(smtp.url)
    host = parts.hostname or ""
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=SEND_TIMEOUT)
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=SEND_TIMEOUT)
    with client:
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message, to_addrs=recipients)


# -- the API ---------------------------------------------------------------------------------------------------

NOTIFIER = web.AppKey("notifier", Notifier)


def add_notifier(app: web.Application, store: Store, smtp: SmtpSettings | None) -> None:
    """Make the app's notifier; the elected leader runs it (`gateway._app`), so a delivery is sent by one replica."""
    app[NOTIFIER] = Notifier(store, smtp, events=app[SERVICES].metrics.events)


async def get_notifications(request: web.Request) -> web.Response:
    run = await visible_run(request)
    kv = await services(request).store.get(deliveries_key(run.name))
    record = RunNotifications(run=run.name) if kv is None else RunNotifications.model_validate_json(kv.value)
    return _json(record)


NOTIFY_ROUTES: list[Route] = [
    Route(
        "GET",
        "/api/v1/runs/{run}/notifications",
        get_notifications,
        "The deliveries of the run's notification rules (pending, delivered or failed, with attempts and error)",
        answer=RunNotifications,
    ),
]
