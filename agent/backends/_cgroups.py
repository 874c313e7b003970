"""cgroup v1 groups for the process backend: one group per attempt, with memory, cpu and pids limits.

Where groups live: for each controller, under this process's own group in that controller (read from
/proc/self/cgroup and mapped through /proc/self/mountinfo, so a container that mounts only its subtree works), in a
directory of this agent, `<own group>/flyte-agent-<pid>/<sanitised key>-<n>`. Nesting under our own group is what
makes creating them legal in a container or a sandbox, and what keeps the agent's own limit above its attempts'.

The memory controller is required: without a writable v1 memory hierarchy (cgroup v2 only, read-only mount, no
privilege) `available()` is false, a warning is logged once, and the backend runs attempts without limits. cpu and
pids are used when present and writable, and only when a limit asks for them.

An OOM kill is read from the group (`memory.oom_control`: the `oom_kill` counter, or `under_oom`), never guessed
from an exit code: SIGKILL has many senders. Kernels without the counter (< 4.13) fall back to the fail counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("flyte.agent.cgroups")

_CPU_PERIOD_US = 100_000
_MIN_CPU_QUOTA_US = 1_000  # the kernel's floor for cfs_quota_us


@dataclass(frozen=True)
class OomReport:
    limit_bytes: int | None
    oom_kills: int | None
    """None when the kernel has no `oom_kill` counter."""
    under_oom: bool
    failcnt: int
    """Times a charge hit the limit (memory or memory+swap, whichever is larger); not by itself a kill."""
    peak_bytes: int

    @property
    def oom_killed(self) -> bool:
        if self.oom_kills is not None:
            return self.oom_kills > 0 or self.under_oom
        return self.under_oom or self.failcnt > 0


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroup:
    """One attempt's group: a directory per controller it uses."""

    def __init__(self, dirs: dict[str, Path], memory_limit_bytes: int | None) -> None:
        self.dirs = dirs
        self.memory_limit_bytes = memory_limit_bytes

    def limit_memory(self, limit_bytes: int) -> None:
        """Set the memory limit of a group that is already running (a spare worker taking on an assignment)."""
        directory = self.dirs["memory"]
        _write(directory / "memory.limit_in_bytes", str(limit_bytes))
        memsw = directory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, str(limit_bytes))
        self.memory_limit_bytes = limit_bytes

    def add(self, pid: int) -> None:
        for directory in self.dirs.values():
            _write(directory / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.dirs.values():
            try:
                found.update(int(line) for line in (directory / "cgroup.procs").read_text().split())
            except OSError:
                continue
        return found

    def signal_all(self, sig: int) -> None:
        """Reaches what left the process group (setsid, daemons): a cgroup cannot be escaped from the inside."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def oom(self) -> OomReport:
        memory = self.dirs["memory"]
        fields: dict[str, int] = {}
        try:
            for line in (memory / "memory.oom_control").read_text().splitlines():
                name, _, value = line.partition(" ")
                fields[name] = int(value)
        except (OSError, ValueError):
            pass
        # With swap limited too, the memory+swap counter is the one charged first, so its failcnt may be the only
        # one that moves.
        failcnt = max(_read_int(memory / "memory.failcnt"), _read_int(memory / "memory.memsw.failcnt"))
        return OomReport(
            limit_bytes=self.memory_limit_bytes,
            oom_kills=fields.get("oom_kill"),
            under_oom=fields.get("under_oom", 0) > 0,
            failcnt=failcnt,
            peak_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
        )

    async def remove(self, within: float = 2.0) -> bool:
        """Kill what is left and remove the directories; rmdir fails (EBUSY) until the last task has exited."""
        deadline = time.monotonic() + within
        while True:
            self.signal_all(signal.SIGKILL)
            for controller, directory in list(self.dirs.items()):
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    continue
                del self.dirs[controller]
            if not self.dirs:
                return True
            if time.monotonic() > deadline:
                log.warning("could not remove cgroups %s within %.1fs", sorted(map(str, self.dirs.values())), within)
                return False
            await asyncio.sleep(0.01)


def _own_dirs() -> dict[str, Path]:
    """Each v1 controller's directory of this process's own group, from /proc/self/cgroup and mountinfo."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller:
                own[controller] = path
    dirs: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fs = right.split(" ")
        if len(fs) < 3 or fs[0] != "cgroup":
            continue
        _, _, _, root, mount_point = left.split(" ")[:5]
        for controller in fs[2].split(","):
            own_path = own.get(controller)
            if own_path is None:
                continue
            # The mount may show only a subtree (a container's): our path is relative to the mount's root.
            relative = os.path.relpath(own_path, root)
            if not relative.startswith(".."):
                dirs[controller] = Path(mount_point) / relative
    return dirs


def _sanitise(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:96] or "attempt"


class Cgroups:
    """This agent's directories in each usable controller; `create` makes one attempt's group under them."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"flyte-agent-{os.getpid()}"
        self._bases: dict[str, Path] | None = None
        self._unavailable_reason = ""
        self._numbers = itertools.count()
        self._cpu_warned = False

    def available(self) -> bool:
        """Whether the memory controller is usable here; detected once, with a real write, and warned about once."""
        if self._bases is None:
            self._bases = self._detect()
            if "memory" not in self._bases:
                log.warning("cgroup memory limits are not enforced on this agent: %s", self._unavailable_reason)
        return "memory" in self._bases

    @property
    def controllers(self) -> frozenset[str]:
        return frozenset(self._bases or ()) if self.available() else frozenset()

    def _detect(self) -> dict[str, Path]:
        try:
            own = _own_dirs()
        except (OSError, ValueError) as error:
            self._unavailable_reason = f"cannot read this process's cgroups ({error})"
            return {}
        if "memory" not in own:
            self._unavailable_reason = "no cgroup v1 memory controller is mounted (cgroup v2 only?)"
            return {}
        bases: dict[str, Path] = {}
        probes = {
            "memory": ("memory.limit_in_bytes", "-1"),
            "cpu": ("cpu.cfs_quota_us", "-1"),
            "pids": ("pids.max", "max"),
        }
        for controller, (control, value) in probes.items():
            if controller not in own:
                continue
            base = own[controller] / self.prefix
            probe = base / f"probe-{next(self._numbers)}"
            try:
                base.mkdir(exist_ok=True)
                probe.mkdir()
                try:
                    _write(probe / control, value)
                finally:
                    probe.rmdir()
            except OSError as error:
                if controller == "memory":
                    self._unavailable_reason = f"cannot create a group under {own[controller]} ({error})"
                    return {}
                log.info("cgroup controller %s is not usable here: %s", controller, error)
                continue
            bases[controller] = base
            self._sweep(own[controller])
        return bases

    def _sweep(self, parent: Path) -> None:
        """Removes the empty directories of agents that died without cleaning up; never kills anything."""
        for stale in parent.glob("flyte-agent-*"):
            pid = stale.name.removeprefix("flyte-agent-")
            if stale.name == self.prefix or not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            for child in stale.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                stale.rmdir()

    def create(
        self, key: str, *, memory_limit_bytes: int | None, cpu_limit: float | None, pids_max: int | None
    ) -> Cgroup:
        """A fresh group for one attempt, with its limits set; raises OSError when the memory group fails."""
        if not self.available():
            raise RuntimeError("cgroups are not available")
        bases = self._bases or {}
        name = f"{_sanitise(key)}-{next(self._numbers)}"
        group = Cgroup({}, memory_limit_bytes)
        try:
            self._make(group, bases["memory"] / name, "memory")
            if memory_limit_bytes is not None:
                _write(group.dirs["memory"] / "memory.limit_in_bytes", str(memory_limit_bytes))
                memsw = group.dirs["memory"] / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # else swap could absorb the overflow and the limit would never kill
                    _write(memsw, str(memory_limit_bytes))
            if pids_max is not None and "pids" in bases:
                self._make(group, bases["pids"] / name, "pids")
                _write(group.dirs["pids"] / "pids.max", str(pids_max))
        except BaseException:
            for directory in group.dirs.values():
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        if cpu_limit is not None:
            self._set_cpu(group, bases.get("cpu"), name, cpu_limit)
        return group

    def _make(self, group: Cgroup, directory: Path, controller: str) -> None:
        directory.parent.mkdir(exist_ok=True)  # `close` removes it whenever it is empty
        directory.mkdir()
        group.dirs[controller] = directory

    def _set_cpu(self, group: Cgroup, base: Path | None, name: str, cpu_limit: float) -> None:
        """cpu is a soft resource: a quota the hierarchy refuses (a parent's quota is lower) is warned about once."""
        try:
            if base is None:
                raise OSError("no usable cpu controller")
            self._make(group, base / name, "cpu")
            _write(group.dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
            quota = max(_MIN_CPU_QUOTA_US, round(cpu_limit * _CPU_PERIOD_US))
            _write(group.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        except OSError as error:
            if not self._cpu_warned:
                self._cpu_warned = True
                log.warning("cpu limits are not enforced on this agent: %s", error)

    def close(self) -> None:
        """Removes this agent's directories once its attempts' groups are gone; leaves them if any remain."""
        for base in (self._bases or {}).values():
            with contextlib.suppress(OSError):
                base.rmdir()


_shared: Cgroups | None = None


def shared() -> Cgroups:
    """One detector per process, so the 'not enforced' warning is logged once however many backends exist."""
    global _shared
    if _shared is None:
        _shared = Cgroups()
    return _shared
