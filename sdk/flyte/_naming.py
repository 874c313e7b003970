"""Deterministic identities for runs and actions.

A child action's name is a pure function of its parent, the task's identity (name and interface), the digest of
its inputs and the parent's call sequence number. A recovered parent that replays its code therefore asks for
the same names again and finds the children it already started, instead of starting them twice.
"""

from __future__ import annotations

import hashlib
import secrets

ROOT_ACTION = "a0"
"""The name of a run's root action."""

_RUN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def child_action_name(parent: str, task_identity: str, inputs_digest: str, seq: int) -> str:
    material = f"{parent}\x1f{task_identity}\x1f{inputs_digest}\x1f{seq}".encode()
    # 20 hex characters carry 80 bits: collisions inside one run are out of reach, and the name stays a valid
    # lower-case DNS label for pod names.
    return "a" + hashlib.sha256(material).hexdigest()[:20]


def new_run_name() -> str:
    """A fresh run name: 'r' and 11 random characters, like Flyte's."""
    return "r" + "".join(secrets.choice(_RUN_ALPHABET) for _ in range(11))


def digest_text(*parts: str) -> str:
    """A short, stable hex digest of some text parts, for versions and identities."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]
