"""The store's key layout (`gateway._keys`): keys parse back to what made them, and no kind of record falls under
another kind's prefix, so a range over one kind never returns another's records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import _keys as keys

NAME = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}", fullmatch=True)
"""Names as the gateway admits them: never empty, never a '/'."""

# One sample key of every kind, and the prefixes the gateway ranges over for that kind.
KINDS: dict[str, tuple[str, list[str]]] = {
    "run": (keys.run_key("r1"), [keys.RUNS]),
    "action": (keys.action_key("r1", "a0"), [keys.ACTIONS, keys.actions_prefix("r1")]),
    "idempotency": (keys.idempotency_key("p", "d", "ab" * 32), [keys.IDEMPOTENCY]),
    "cache": (keys.cache_entry_key("k" * 64), [keys.CACHE]),
    "env version": (
        keys.env_version_key("p", "d", "env", "v1"),
        [keys.TASKS, keys.env_versions_prefix("p", "d", "env")],
    ),
    "latest": (keys.latest_key("p", "d", "env"), [keys.TASKS_LATEST, keys.latest_prefix("p", "d")]),
    "placement": (
        keys.placement_key("r1", "a0", 1),
        [keys.PLACEMENTS, keys.placements_prefix("r1"), keys.placements_prefix("r1", "a0")],
    ),
    "span": (keys.span_key("r1", "0001.2.3-4"), [keys.SPANS, keys.spans_prefix("r1")]),
    "trace": (
        keys.trace_key("r1", "a0", "t"),
        [keys.TRACES, keys.traces_prefix("r1"), keys.traces_prefix("r1", "a0")],
    ),
    "cluster": (keys.cluster_key("east"), [keys.CLUSTERS]),
    "session": (keys.session_key("east"), [keys.SESSIONS]),
    "cordon": (keys.cordon_key("east"), [keys.CORDONS]),
    "epoch": (keys.EPOCH_KEY, []),
    "policy": (keys.POLICY_KEY, []),
    "leader": (keys.LEADER_KEY, []),
    "token": (keys.token_record_key("cd" * 32), [keys.TOKENS]),
    "secret": (keys.secret_key("p", "s"), [keys.secrets_prefix("p")]),
    "worker token key": (keys.WORKER_TOKEN_KEY, []),
    "blob owners": (keys.blob_owners_key("ef" * 32), [keys.BLOB_OWNERS]),
    "ui login": (keys.ui_login_key("01" * 32), [keys.UI_LOGINS]),
}


def test_every_key_is_under_the_root() -> None:
    for key, prefixes in KINDS.values():
        assert key.startswith(keys.ROOT)
        assert all(prefix.startswith(keys.ROOT) for prefix in prefixes)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_key_falls_under_its_own_prefixes_and_no_other_kinds(kind: str) -> None:
    key, own = KINDS[kind]
    assert all(key.startswith(prefix) for prefix in own)
    for other, (_, prefixes) in KINDS.items():
        if other != kind:
            assert not [p for p in prefixes if key.startswith(p)], f"a {kind} key falls under {other}'s prefixes"


def test_no_single_key_is_a_prefix_of_another_kind() -> None:
    # A watch on one key (the leader, the epoch) must not see another kind's keys.
    singles = [key for key, prefixes in KINDS.values() if not prefixes]
    for single in singles:
        assert [key for key, _ in KINDS.values() if key.startswith(single)] == [single]


def test_secrets_of_a_project_named_like_the_worker_key_do_not_include_it() -> None:
    project = keys.WORKER_TOKEN_KEY.removeprefix(keys.SECRETS)
    assert not keys.WORKER_TOKEN_KEY.startswith(keys.secrets_prefix(project))


@given(name=NAME)
def test_a_one_level_key_gives_back_its_name(name: str) -> None:
    # How the gateway reads a name off a key it listed (`kv.key.removeprefix(CLUSTERS)`).
    for make, prefix in [
        (keys.run_key, keys.RUNS),
        (keys.cluster_key, keys.CLUSTERS),
        (keys.session_key, keys.SESSIONS),
        (keys.cordon_key, keys.CORDONS),
    ]:
        assert make(name).removeprefix(prefix) == name


@given(project=NAME, name=NAME, run=NAME, action=NAME)
def test_a_nested_key_gives_back_its_last_part_under_its_prefix(project: str, name: str, run: str, action: str) -> None:
    # `list_secrets` and the trace checkpoints read the last part of each key a range returned.
    assert keys.secret_key(project, name).rpartition("/")[2] == name
    assert keys.secret_key(project, name).startswith(keys.secrets_prefix(project))
    assert keys.trace_key(run, action, name).rpartition("/")[2] == name
    assert keys.action_key(run, action).startswith(keys.actions_prefix(run))


@given(run=NAME, action=NAME, attempt=st.integers(0, 999_998))
def test_placement_keys_list_an_actions_attempts_in_order(run: str, action: str, attempt: int) -> None:
    key = keys.placement_key(run, action, attempt)
    assert key.startswith(keys.placements_prefix(run, action))
    assert key < keys.placement_key(run, action, attempt + 1)
