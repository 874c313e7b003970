"""What a test needs from the machine (etcd, chromium, iproute2, cgroups, shellcheck), decided in one place.

`scripts/test.sh` installs the Debian packages before pytest starts, so a missing one is a broken setup and the test
fails with the command that installs it. Only an explicit `scripts/test.sh --skip-missing` (which sets
`FLYTE_TESTS_SKIP_MISSING=1`) turns that failure into a skip, and the session's summary lists every such skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

from flyte.cli import _s3_local

SKIP_MISSING = "FLYTE_TESTS_SKIP_MISSING"
"""Set to 1 by `scripts/test.sh --skip-missing`: a missing prerequisite skips its tests instead of failing them."""

skipped: list[str] = []
"""The prerequisites this session skipped for, reported at the end of the run (see tests/conftest.py)."""


def require(missing: str | None, install: str) -> None:
    """Fail (or, with the explicit flag, skip) the calling test when `missing` says what the machine lacks."""
    if missing is None:
        return
    message = f"{missing}; install it with: {install}"
    if os.environ.get(SKIP_MISSING) != "1":
        pytest.fail(f"{message} (or run scripts/test.sh --skip-missing to skip such tests)", pytrace=False)
    if message not in skipped:
        skipped.append(message)
    pytest.skip(message)


def on_path(command: str) -> str | None:
    """Why `command` cannot be used (it is not on PATH), or None when it can."""
    return None if shutil.which(command) else f"no `{command}` on PATH"


ETCD_INSTALL = "apt-get install etcd-server (or bash scripts/test.sh, which installs it as root)"
CHROMIUM_INSTALL = "apt-get install chromium (or bash scripts/test.sh, which installs it as root)"
IPROUTE_INSTALL = "apt-get install iproute2, and run as root (CAP_NET_ADMIN) for network namespaces"
WEED_INSTALL = _s3_local.WEED_INSTALL
CGROUPS_INSTALL = "run as root on a machine with a writable cgroup memory hierarchy (cgroup v1 or v2)"
