"""Running attempts as an unprivileged user on the process backend (`flyte agent serve --run-as USER`).

The agent runs as root and starts every task process (one-off workers, spares, pool workers) as USER, with no
supplementary groups. What a task needs of the agent's work directory is opened to USER and nothing else:

    work dir, bundles/, attempts/     root 0711: USER may pass through to a path it is given, never list
    bundles/DIGEST                    root:USER 0750/0640: readable, not writable (attempts share a bundle)
    assignments/                      root:USER 0730: USER may remove its assignment once read, never list
    an attempt's assignment, secrets  USER 0600 (folders 0700)
    the sockets folder, sockets       root:USER 0710, sockets 0660: spares and pool workers dial the agent

Everything else the agent keeps (its token file, reported times, logs, venvs of other images) stays root's 0700/0600.
One user serves the whole agent, so attempts of one agent are not kept from each other (docs/security.md says why).
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        """The user named `name`; ValueError if there is none, it is root, or this process may not switch to it."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"--run-as: there is no user {name!r} (create it: useradd --system {name})") from None
        if entry.pw_uid == 0:
            raise ValueError("--run-as: the user must not be root")
        if os.geteuid() != 0:
            raise ValueError("--run-as needs the agent to run as root (only root may start processes as another user)")
        return cls(name, entry.pw_uid, entry.pw_gid)

    def own(self, path: Path) -> None:
        """Give `path` and everything under it to this user alone (folders 0700, files 0600)."""
        for item in _walk(path):
            os.chown(item, self.uid, self.gid, follow_symlinks=False)
            if not item.is_symlink():
                item.chmod(0o700 if item.is_dir() else 0o600)

    def share_read(self, path: Path) -> None:
        """Let this user's group read `path` and everything under it, not change it (execute bits kept)."""
        for item in _walk(path):
            if item.is_symlink():
                continue
            os.chown(item, 0, self.gid)
            mode = stat.S_IMODE(item.stat().st_mode)
            item.chmod(0o750 if item.is_dir() else (0o750 if mode & 0o100 else 0o640))

    def share_socket(self, path: Path) -> None:
        """Let this user's processes dial a socket of the agent's."""
        os.chown(path, 0, self.gid)
        path.chmod(0o660)

    def open_folder(self, path: Path, mode: int) -> None:
        """A folder of the agent's that this user may use as `mode` says (0711: pass through; 0730: remove)."""
        os.chown(path, 0, self.gid)
        path.chmod(mode)


def _walk(root: Path) -> list[Path]:
    found = [root]
    if root.is_dir() and not root.is_symlink():
        for folder, folders, files in os.walk(root):
            found += [Path(folder) / name for name in [*folders, *files]]
    return found
