"""A federation under test, every part a real process: etcd, the gateway, agents (optionally inside a network
namespace), and the workers they start; plus the workload and the invariants the fault matrix checks.

    test ──► etcd ──► Federation.start_gateway() (`flyte gateway serve --store etcd://...`)
         ──► Federation.start_agent() x N (`flyte agent serve`, optionally inside a network namespace)
         ──► load(WORKLOAD) ──► flyte.run(main) ──► steps append to a side-effect ledger (one JSON line per event)
         ──► inject a fault (kill, stop, cut, ...) ──► wait for the run ──► check_invariants(run, ledger, seed)

The invariants read the store's history of the run's actions (an etcd watch from the run's first revision), not
just the final state, so a result that was overwritten or an attempt number that went backwards is caught even if the
end looks right. Every assertion message starts with the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from etcd_process import EtcdProcess
from prerequisites import ETCD_INSTALL, on_path, require
from processes import AGENT_CONNECTED, LISTENING, Proc, gateway_command, stop_all
from programs import write_and_import

import flyte
from flyte._client import GatewayClient, call_sync, client_for
from flyte._wire import ActionSummary, Phase, PlacementRecord, RunSummary
from gateway._auth import create_token
from gateway._keys import PLACEMENTS, actions_prefix
from gateway._runs import SYSTEM_RETRIES, decode_event
from gateway.store import Compacted, EventType, Store, open_store

FIRST_SYSTEM_BACKOFF = 1.0
"""The gateway's backoff before the first system retry (`gateway._runs._maybe_retry`: 2 ** 0 s)."""


def require_etcd() -> None:
    """Fail without Debian's etcd-server (skip only with `scripts/test.sh --skip-missing`)."""
    require(on_path("etcd"), ETCD_INSTALL)


@dataclass
class Federation:
    """A gateway on etcd and its agents. `host` is where the gateway listens (a veth address for netns rows)."""

    root: Path
    etcd: EtcdProcess
    lease_ttl: float = 3.0
    host: str = "127.0.0.1"
    port: int = 0
    gateway: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)
    """More environment for the gateway (failpoints)."""
    replicas: list[Proc] = field(default_factory=list)
    blobs: str | None = None
    """The gateway's blob store (an `s3://` URL, its credentials in the environment); default a directory."""
    members: str | None = None
    """The store URL naming every member of an etcd cluster, when the federation runs on one (`etcd` is then the
    cluster's first member)."""

    @property
    def store_url(self) -> str:
        return self.members or self.etcd.url

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root / "home"),
            "FLYTE_HOME": str(self.root / "flyte-home"),
            "FLYTE_LEASE_TTL": str(self.lease_ttl),
            "PYTHONUNBUFFERED": "1",
        }

    def mint(self, *scopes: str, projects: list[str] | None = None, expires_in: float | None = None) -> str:
        return asyncio.run(_mint(self.store_url, list(scopes), projects, expires_in))

    def start_gateway(self) -> None:
        """Start (or restart, on the same port) the gateway; the first start picks a free port."""
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        if "admin" not in self.tokens:
            self.tokens["admin"] = self.mint("admin")
        if self.gateway is None:
            extra = ["--blobs", self.blobs or str(self.root / "blobs"), "--host", self.host, "--no-write-config"]
            command = gateway_command(self.store_url, port=self.port, extra_args=extra)
            self.gateway = Proc("gateway", command, self.root / "gateway.log", {**self.env, **self.gateway_env})
        match = self.gateway.start(LISTENING)
        if self.port == 0:
            self.port = int(match.group(1).rsplit(":", 1)[1])
            self.gateway.command[self.gateway.command.index("--port") + 1] = str(self.port)

    def start_replica(self) -> tuple[Proc, str]:
        """Another gateway on the same store, as a scaled-out deployment runs them, on a port of its own; returns
        it and its endpoint."""
        assert self.gateway is not None
        command = list(self.gateway.command)
        command[command.index("--port") + 1] = "0"
        number = len(self.replicas) + 1
        replica = Proc(
            f"replica-{number}", command, self.root / f"replica-{number}.log", {**self.env, **self.gateway_env}
        )
        self.replicas.append(replica)
        endpoint = replica.start(LISTENING).group(1)
        # A restart comes back on the same port: the endpoints agents and clients were given stay right.
        command[command.index("--port") + 1] = endpoint.rsplit(":", 1)[1]
        return replica, endpoint

    def start_replicas(self, count: int, leader_ttl: float) -> dict[str, Proc]:
        """The gateway and `count - 1` more replicas on its store, their leader lease `leader_ttl`: by endpoint."""
        self.gateway_env["FLYTE_LEADER_TTL"] = str(leader_ttl)
        self.start_gateway()
        assert self.gateway is not None
        processes = {self.endpoint: self.gateway}
        for _ in range(count - 1):
            replica, endpoint = self.start_replica()
            processes[endpoint] = replica
        return processes

    def placements(self, run: str) -> list[PlacementRecord]:
        """Every placement decision recorded for `run`'s actions."""
        return asyncio.run(_placements(self.store_url, run))

    def start_agent(
        self, name: str, *, cpu: str = "4", netns: str | None = None, spares: int = 1, gateway: str | None = None
    ) -> int:
        """Start (or restart) cluster `name`'s agent (dialing `gateway`, by default the gateway itself); returns the
        epoch its session got."""
        if name not in self.tokens:
            self.tokens[name] = self.mint(f"agent:{name}")
        agent = self.agents.get(name)
        if agent is None:
            work = self.root / "agents" / name
            # Room for two 2Gi steps and a parent, which counts as the default request (256Mi).
            command = [
                sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", gateway or self.endpoint,
                "--cluster", name, "--region", name, "--cpu", cpu,
                "--memory", "4352Mi", "--work-dir", str(work), "--spares", str(spares),
            ]  # fmt: skip
            if netns is not None:
                command = ["ip", "netns", "exec", netns, *command]
            # Each cluster has its own flyte home, as separate machines would.
            agent = self.agents[name] = Proc(
                f"agent-{name}",
                command,
                self.root / f"agent-{name}.log",
                # The token in the environment, never on the command line (the agent removes it at start).
                {**self.env, "FLYTE_HOME": str(work), "FLYTE_AGENT_TOKEN": self.tokens[name]},
            )
        return int(agent.start(AGENT_CONNECTED).group(1))

    def connect(self) -> None:
        """Point this test process's SDK at the federation."""
        flyte.init(endpoint=self.endpoint, api_key=self.tokens["admin"], insecure=True)

    @property
    def client(self) -> GatewayClient:
        return client_for()

    def load(self, name: str, source: str) -> ModuleType:
        """Write a program next to the federation and import it, as `flyte.run` callers do."""
        # Programs here are bundled with their whole folder: the federation's state and logs are not their code.
        (self.root / ".flyteignore").write_text(
            "agents/\nflyte-home/\nhome/\ntokens/\nlogs/\nblobs/\n*.log\n*.jsonl\n*.db*\n"
        )
        return write_and_import(self.root, name, source)

    def run(self, name: str) -> RunSummary:
        return call_sync(self.client.get_run(name))

    def actions(self, run: str) -> list[ActionSummary]:
        return call_sync(self.client.list_actions(run))

    def history(self, run: str) -> dict[str, list[ActionSummary]]:
        return asyncio.run(_history(self.store_url, run))

    def close(self) -> None:
        stop_all([*self.agents.values(), *self.replicas])
        if self.gateway is not None:
            self.gateway.stop()
        with contextlib.suppress(Exception):
            flyte.init()


async def _mint(store_url: str, scopes: list[str], projects: list[str] | None, expires_in: float | None) -> str:
    store = await open_store(store_url)
    try:
        return await create_token(store, scopes, projects, "fault matrix", expires_in)
    finally:
        await store.close()


async def _placements(store_url: str, run: str) -> list[PlacementRecord]:
    store = await open_store(store_url)
    try:
        kvs, _ = await store.range(f"{PLACEMENTS}{run}/")
        return [PlacementRecord.model_validate_json(kv.value) for kv in kvs]
    finally:
        await store.close()


async def _history(store_url: str, run: str) -> dict[str, list[ActionSummary]]:
    """Every version the store still holds of each of the run's actions, oldest first: all of them, unless a row
    compacted the store during the run (then those after the compaction)."""
    store = await open_store(store_url)
    try:
        kvs, _ = await store.range(actions_prefix(run))
        if not kvs:
            return {}
        last = max(kv.mod_revision for kv in kvs)
        # From the run's first write: older history may be compacted away, and holds nothing of this run.
        first = min(kv.create_revision for kv in kvs)
        while True:
            try:
                return await _versions(store, actions_prefix(run), first, last)
            except Compacted as compacted:
                first = compacted.compact_revision + 1
    finally:
        await store.close()


async def _versions(store: Store, prefix: str, first: int, last: int) -> dict[str, list[ActionSummary]]:
    versions: dict[str, list[ActionSummary]] = defaultdict(list)
    async with asyncio.timeout(30):
        async for batch in store.watch(prefix, first):
            for event in batch:
                if event.type is EventType.PUT:
                    action = decode_event(event)
                    versions[action.name].append(action)
            if batch[-1].mod_revision >= last:
                break
    return dict(versions)


# -- the workload ---------------------------------------------------------------------------------------------

WORKLOAD = """
import asyncio
import json
import os
import time

import flyte

home = flyte.TaskEnvironment("{env}_main")
work = flyte.TaskEnvironment("{env}_work", resources=flyte.Resources(memory="2Gi"){reusable})
home.add_dependency(work)


def note(ledger: str, event: str) -> None:
    ctx = flyte.ctx()
    line = {{"event": event, "run": ctx.action.run_name, "action": ctx.action.name, "attempt": ctx.attempt,
             "pid": os.getpid(),
             "cluster": os.environ.get("FLYTE_CLUSTER"), "t": time.time()}}
    with open(ledger, "a") as out:
        out.write(json.dumps(line) + "\\n")


@work.task
async def step(i: int, ledger: str, hold: float) -> int:
    note(ledger, "start")
    await asyncio.sleep(hold)
    note(ledger, "end")
    return i * i


@home.task
async def main(n: int, ledger: str, hold: float) -> int:
    return sum(await asyncio.gather(*(step(i, ledger, hold) for i in range(n))))
"""


def workload(fed: Federation, name: str, reusable: str = "") -> ModuleType:
    """The matrix's program: `main(n, ledger, hold)` fans out n steps that each hold 2 GiB of an agent's memory for
    `hold` seconds (memory, not cpu: an attempt with a cpu limit cannot start in a spare worker)."""
    return fed.load(f"faults_{name}", WORKLOAD.format(env=name.replace("_", "-"), reusable=reusable))


def expected(n: int) -> int:
    return sum(i * i for i in range(n))


@dataclass(frozen=True)
class Entry:
    event: str
    run: str
    action: str
    attempt: int
    pid: int
    cluster: str
    t: float


class Ledger:
    """The side effects the workload's steps leave: what really ran, where, and how often."""

    def __init__(self, path: Path):
        self.path = path

    def entries(self, run: str | None = None) -> list[Entry]:
        """What happened, of one run or all of them."""
        if not self.path.exists():
            return []
        # A line being written may be partial: only whole lines count.
        lines = self.path.read_text().split("\n")[:-1]
        entries = [Entry(**json.loads(line)) for line in lines]
        return [e for e in entries if run is None or e.run == run]

    def started(self, run: str | None = None) -> list[Entry]:
        return [e for e in self.entries(run) if e.event == "start"]


# -- invariants -----------------------------------------------------------------------------------------------


def check_invariants(
    fed: Federation,
    run: str,
    ledger: Ledger,
    seed: int,
    phase: Phase = Phase.SUCCEEDED,
    user_failed: Collection[str] = (),
) -> None:
    """What must hold after any fault: see the module docstring. Raises AssertionError naming the seed.

    `user_failed`: actions whose one user error is the row's workload (an OOM), not something a fault spent: each ends
    with exactly one user failure, in the version that ends it."""
    summary = fed.run(run)
    say = f"seed={seed} run={run}"
    assert summary.phase is phase, f"{say}: the run is {summary.phase.value}, expected {phase.value}: {summary.error}"
    final = {a.name: a for a in fed.actions(run)}
    for action in final.values():
        assert action.phase.is_terminal, f"{say}: {action.name} is left {action.phase.value}"
        user_failures = int(action.name in user_failed)
        assert action.user_failures == user_failures, f"{say}: {action.name} user failures: {action.error}"
        assert action.system_failures <= SYSTEM_RETRIES, f"{say}: {action.name} {action.system_failures} failures"
    history = fed.history(run)
    for name, versions in history.items():
        _check_history(f"{say} action={name}", versions, name in user_failed)
    per_attempt: dict[tuple[str, int], list[Entry]] = defaultdict(list)
    for entry in ledger.started(run):
        per_attempt[(entry.action, entry.attempt)].append(entry)
    for (name, attempt), starts in per_attempt.items():
        assert len(starts) == 1, f"{say}: attempt {attempt} of {name} started {len(starts)} processes: {starts}"
        assert name in final, f"{say}: the ledger names {name}, which the gateway does not know"
        assert attempt <= final[name].attempts, f"{say}: {name} ran attempt {attempt} beyond its recorded attempts"


def check_room_returned(fed: Federation, seed: int, within: float = 30.0) -> None:
    """Once the federation is idle, every agent's cluster has all its room free again: no attempt, however it
    ended (a lost cluster, a fenced session, a restarted gateway), left a reservation behind (issue 14)."""
    idle: dict[str, tuple[dict[str, float], dict[str, float]]] = {}

    def returned() -> bool:
        clusters = call_sync(fed.client.request("GET", "/api/v1/clusters"))
        idle.clear()
        idle.update({c["name"]: (c["free"], c["capacity"]) for c in clusters if c["name"] in fed.agents})
        connected = {c["name"] for c in clusters if c["connected"]}
        return connected >= set(fed.agents) and all(
            free.get(resource) == amount for free, capacity in idle.values() for resource, amount in capacity.items()
        )

    deadline = time.monotonic() + within
    while not returned():
        assert time.monotonic() < deadline, f"seed={seed}: room not returned within {within}s (free, capacity): {idle}"
        time.sleep(0.1)


def _check_history(say: str, versions: list[ActionSummary], user_failed: bool = False) -> None:
    """Attempts only grow; each attempt ends once (a result, or a requeue); nothing changes after the end; and an
    attempt stays with the cluster session it was placed on (no fenced or foreign agent moved it). A user failure
    comes only with the end of an action that is `user_failed`."""
    ended: set[int] = set()
    placed: dict[int, tuple[str | None, int]] = {}
    previous: ActionSummary | None = None
    for version in versions:
        if version.phase in (Phase.PLACED, Phase.RUNNING) or (version.phase.is_terminal and version.cluster):
            owner = placed.setdefault(version.attempts, (version.cluster, version.epoch))
            assert owner == (version.cluster, version.epoch), f"{say}: attempt {version.attempts} moved: {version}"
        if previous is not None:
            assert not previous.phase.is_terminal, f"{say}: changed after it ended: {previous.phase} -> {version}"
            assert version.attempts >= previous.attempts, f"{say}: attempt went back {previous.attempts}->{version}"
            ends_in_user_error = user_failed and version.phase is Phase.FAILED
            spent = version.user_failures - previous.user_failures
            assert spent == (1 if ends_in_user_error else 0), f"{say}: a fault spent a user retry: {version}"
            requeued = version.phase is Phase.QUEUED and previous.phase is not Phase.QUEUED
            if version.phase.is_terminal or requeued:
                assert version.attempts not in ended, f"{say}: attempt {version.attempts} recorded two results"
                ended.add(version.attempts)
            if requeued:
                assert version.system_failures == previous.system_failures + 1, f"{say}: requeued without a failure"
        previous = version


def placed_again_at(fed: Federation, run: str, action: str, attempt: int) -> float:
    """When the store recorded `attempt` of `action` leaving the queue (gateway time)."""
    for version in fed.history(run).get(action, []):
        if version.attempts == attempt and version.phase is not Phase.QUEUED and version.updated_at is not None:
            return version.updated_at
    raise AssertionError(f"{action} never started attempt {attempt}")


RECOVERY_TIMES: list[dict[str, Any]] = []
"""Every recovery time the session measured; conftest writes them out and prints them at the end."""


class Recovery:
    """A row's recorder: keeps each recovery time for the report and checks it against the row's bound."""

    def __init__(self, row: str, seed: int):
        self.row = row
        self.seed = seed

    def record(self, seconds: float, bound: float, **detail: Any) -> None:
        figure = {"row": self.row, "seed": self.seed, "seconds": round(seconds, 2), "bound": bound, **detail}
        RECOVERY_TIMES.append(figure)
        assert seconds <= bound, f"seed={self.seed}: recovery took {seconds:.2f}s, over the bound of {bound:.2f}s"


# -- network namespaces -----------------------------------------------------------------------------------------


@dataclass
class Link:
    """A network namespace joined to the host by a veth pair on a private /30: the host side is where the gateway
    listens (a host-internal link, not a public interface), the namespace side is where a cut agent lives."""

    ns: str
    host_if: str
    host_ip: str
    ns_ip: str

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def netem(self, *args: str) -> None:
        """Delay or lose packets leaving the namespace (`tc qdisc ... netem`)."""
        _run("ip", "netns", "exec", self.ns, "tc", "qdisc", "add", "dev", "veth0", "root", "netem", *args)


class SlowLossyRelay:
    """A bad link in user space, for kernels without `netem`: a TCP relay on the link's host side, between the
    namespace and the gateway, that holds every chunk leaving the namespace `delay` seconds and, for a `loss` share
    of them, as long again plus a retransmission timeout (what TCP does when that packet is lost). Later chunks wait
    behind a held one, as they do behind a lost segment. The relay's thread and sockets live as long as the test."""

    def __init__(self, listen_host: str, target: tuple[str, int], delay: float, loss: float, seed: int):
        self._target = target
        self._delay = delay
        self._loss = loss
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self.held = 0
        """Chunks from the namespace that went through the relay (each delayed; some as if lost)."""
        self._thread = threading.Thread(target=self._serve, args=(listen_host,), name="lossy-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")

    def _serve(self, host: str) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _relay(self, inner_reader: asyncio.StreamReader, inner_writer: asyncio.StreamWriter) -> None:
        try:
            outer_reader, outer_writer = await asyncio.open_connection(*self._target)
        except OSError:
            inner_writer.close()
            return
        try:
            await asyncio.gather(
                self._pipe(inner_reader, outer_writer, bad=True),
                self._pipe(outer_reader, inner_writer, bad=False),
                return_exceptions=True,
            )
        finally:
            inner_writer.close()
            outer_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bad: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(65536):
                hold = 0.0
                if bad:
                    self.held += 1
                    hold = self._delay
                    if self._rng.random() < self._loss:
                        hold += self._delay + self._rng.uniform(0.2, 0.6)
                await queue.put((time.monotonic() + hold, chunk))
        finally:
            await queue.put((time.monotonic(), b""))
            with contextlib.suppress(Exception):
                await delivering

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip()}")


def _ip(*args: str) -> None:
    _run("ip", *args)


def netns_unavailable() -> str | None:
    """Why this machine cannot make network namespaces (no `ip`, no CAP_NET_ADMIN), or None if it can."""
    if shutil.which("ip") is None:
        return "no `ip` (iproute2) on PATH"
    probe = f"ffprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except OSError as error:
        return f"cannot create a network namespace (CAP_NET_ADMIN?): {error}"
    _ip("netns", "del", probe)
    return None


def netem_unavailable(link: Link) -> str | None:
    """Why `tc netem` does not work here (no `tc`, or a kernel without the netem qdisc), or None if it does."""
    if shutil.which("tc") is None:
        return "no `tc` (iproute2) on PATH"
    try:
        link.netem("delay", "1ms")
        _run("ip", "netns", "exec", link.ns, "tc", "qdisc", "del", "dev", "veth0", "root")
    except OSError as error:
        return f"tc netem does not work on this kernel: {error}"
    return None


@contextlib.contextmanager
def namespace_link(token: str, subnet: int) -> Iterator[Link]:
    """Make the namespace and its veth pair; always remove them, even when the test fails."""
    base = f"10.213.{subnet // 64}.{(subnet % 64) * 4}"
    prefix = base.rsplit(".", 1)[0]
    last = int(base.rsplit(".", 1)[1])
    link = Link(f"ff-{token}", f"ff{token}", f"{prefix}.{last + 1}", f"{prefix}.{last + 2}")
    try:
        _ip("netns", "add", link.ns)
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", "veth0", "netns", link.ns)
        _ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _run("ip", "netns", "exec", link.ns, "ip", "addr", "add", f"{link.ns_ip}/30", "dev", "veth0")
        _run("ip", "netns", "exec", link.ns, "ip", "link", "set", "veth0", "up")
        _run("ip", "netns", "exec", link.ns, "ip", "link", "set", "lo", "up")
        yield link
    finally:
        with contextlib.suppress(OSError):
            _ip("netns", "del", link.ns)
        with contextlib.suppress(OSError):
            _ip("link", "del", link.host_if)


def call(fed: Federation, method: str, path: str, body: bytes | None = None, token: str | None = "admin") -> Any:
    """(status, decoded JSON) of one request; a refusal must be `{code, message}` and never a traceback."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + fed.tokens.get(token, token)
    request = urllib.request.Request(fed.endpoint + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        answer = json.loads(text)
        assert set(answer) == {"code", "message"}, text[:500]
        assert "Traceback" not in text
        return error.code, answer
