"""The store's key layout: every key the gateway writes is spelled here, and only here.

Every key lives under `/flyte/`. A kind of record has either one key (`/flyte/epoch`) or a prefix that its keys
share (`/flyte/runs/`); no key of one kind falls under the prefix of another, so a range over one kind never returns
another's records (`tests/unit/test_store_keys.py` checks it).

| key                                                   | holds                               | written by     |
|-------------------------------------------------------|-------------------------------------|----------------|
| `/flyte/runs/{run}`                                   | a `RunSummary`                      | `_runs`        |
| `/flyte/actions/{run}/{action}`                       | an `ActionSummary`                  | `_runs`        |
| `/flyte/idempotency/{project}/{domain}/{sha256(key)}` | the run an idempotency key made     | `_runs`        |
| `/flyte/cache/{cache key}`                            | a cached task output                | `_runs`        |
| `/flyte/tasks/{project}/{domain}/{env}/{version}`     | an environment version's task specs | `_registry`    |
| `/flyte/tasks-latest/{project}/{domain}/{env}`        | an environment's latest version     | `_registry`    |
| `/flyte/placements/{run}/{action}/{attempt:06d}`      | a placement decision                | `_pending`     |
| `/flyte/spans/{run}/{stamp}`                          | a batch of a run's trace spans      | `_tracing`     |
| `/flyte/traces/{run}/{action}/{key}`                  | a `flyte.trace` checkpoint          | `_connections` |
| `/flyte/clusters/{cluster}`                           | a `ClusterRecord`                   | `_sessions`    |
| `/flyte/sessions/{cluster}`                           | a live session's epoch (leased)     | `_sessions`    |
| `/flyte/cordons/{cluster}`                            | a `CordonRecord`                    | `_cluster_admin` |
| `/flyte/epoch`                                        | the last session epoch handed out   | `_sessions`    |
| `/flyte/policy`                                       | the placement policy document       | `_cluster_admin` |
| `/flyte/leader`                                       | the leader replica (leased)         | `_leader`      |
| `/flyte/tokens/{sha256(token)}`                       | a `TokenRecord`, never the token    | `_auth`        |
| `/flyte/secrets/{project}/{name}`                     | a sealed secret                     | `_secrets`     |
| `/flyte/secrets/worker-token-key`                     | the worker tokens' signing key      | `_auth`        |
| `/flyte/blobs/{sha256}`                               | the projects that own a blob        | `_blobs`       |
| `/flyte/ui-logins/{sha256(code)}`                     | an unused one-time UI login code    | `_ui`          |
| `/flyte/conditions/{run}/{action}/{name}`             | a condition a task waits on         | `_conditions`  |
| `/flyte/condition-hooks/{run}/{action}/{name}`        | a condition's webhook, until sent   | `_notify`      |
| `/flyte/triggers/{project}/{domain}/{task}/{name}`    | a trigger's state and next firing   | `_scheduler`   |
| `/flyte/notify-rules/{run}`                           | a run's notification rules          | `_notify`      |
| `/flyte/notifications/{run}`                          | a run's notification deliveries     | `_notify`      |
| `/flyte/blob-seen/{sha256}`                           | when an object-store blob was used  | `_blobs_s3`    |
| `/flyte/logs/{run}/{action}/{attempt:06d}/{stamp}`    | a chunk of an attempt's output      | `_connections` |

The worker token key sits beside the secrets, one segment deep, so it never falls under a project's secrets prefix
(`/flyte/secrets/{project}/`), the only secrets range the gateway reads.
"""

from __future__ import annotations

ROOT = "/flyte/"
"""Everything the gateway keeps (a backup copies this prefix)."""

RUNS = "/flyte/runs/"
ACTIONS = "/flyte/actions/"
IDEMPOTENCY = "/flyte/idempotency/"
CACHE = "/flyte/cache/"
TASKS = "/flyte/tasks/"
TASKS_LATEST = "/flyte/tasks-latest/"
PLACEMENTS = "/flyte/placements/"
SPANS = "/flyte/spans/"
TRACES = "/flyte/traces/"
CLUSTERS = "/flyte/clusters/"
SESSIONS = "/flyte/sessions/"
CORDONS = "/flyte/cordons/"
EPOCH_KEY = "/flyte/epoch"
POLICY_KEY = "/flyte/policy"
LEADER_KEY = "/flyte/leader"
"""Who leads: `{"replica": ..., "endpoint": ..., "since": ...}`, written with the leader's lease."""
TOKENS = "/flyte/tokens/"
SECRETS = "/flyte/secrets/"
WORKER_TOKEN_KEY = "/flyte/secrets/worker-token-key"
BLOB_OWNERS = "/flyte/blobs/"
UI_LOGINS = "/flyte/ui-logins/"
CONDITIONS = "/flyte/conditions/"
CONDITION_HOOKS = "/flyte/condition-hooks/"
"""A condition's `ConditionWebhook` still to send, apart from the condition's record: its URL may be a secret."""
TRIGGERS = "/flyte/triggers/"
NOTIFY_RULES = "/flyte/notify-rules/"
"""A run's notification rules, apart from its record: webhook URLs are secrets."""
DELIVERIES = "/flyte/notifications/"
LOGS = "/flyte/logs/"
"""An attempt's output, in the chunks its agent sent: in the store, so every replica serves it."""
BLOB_SEEN = "/flyte/blob-seen/"
"""When an object store's blob was last used (its mark-and-sweep's grace period counts from it)."""


def run_key(run: str) -> str:
    return f"{RUNS}{run}"


def action_key(run: str, action: str) -> str:
    return f"{ACTIONS}{run}/{action}"


def actions_prefix(run: str) -> str:
    return f"{ACTIONS}{run}/"


def idempotency_key(project: str, domain: str, digest: str) -> str:
    """Where the run a request's idempotency key made is kept; `digest` is the sha256 of that key."""
    return f"{IDEMPOTENCY}{project}/{domain}/{digest}"


def cache_entry_key(cache_key: str) -> str:
    return f"{CACHE}{cache_key}"


def env_version_key(project: str, domain: str, env: str, version: str) -> str:
    return f"{TASKS}{project}/{domain}/{env}/{version}"


def env_versions_prefix(project: str, domain: str, env: str) -> str:
    return f"{TASKS}{project}/{domain}/{env}/"


def latest_key(project: str, domain: str, env: str) -> str:
    return f"{TASKS_LATEST}{project}/{domain}/{env}"


def latest_prefix(project: str, domain: str) -> str:
    return f"{TASKS_LATEST}{project}/{domain}/"


def placement_key(run: str, action: str, attempt: int) -> str:
    # Zero-padded so a range lists an action's attempts in order.
    return f"{PLACEMENTS}{run}/{action}/{attempt:06d}"


def placements_prefix(run: str, action: str | None = None) -> str:
    """A run's placement records, or one action's."""
    return f"{PLACEMENTS}{run}/" if action is None else f"{PLACEMENTS}{run}/{action}/"


def span_key(run: str, stamp: str) -> str:
    return f"{SPANS}{run}/{stamp}"


def spans_prefix(run: str) -> str:
    return f"{SPANS}{run}/"


def trace_key(run: str, action: str, key: str) -> str:
    return f"{TRACES}{run}/{action}/{key}"


def traces_prefix(run: str, action: str | None = None) -> str:
    """A run's trace checkpoints, or one action's."""
    return f"{TRACES}{run}/" if action is None else f"{TRACES}{run}/{action}/"


def cluster_key(cluster: str) -> str:
    return f"{CLUSTERS}{cluster}"


def session_key(cluster: str) -> str:
    return f"{SESSIONS}{cluster}"


def cordon_key(cluster: str) -> str:
    return f"{CORDONS}{cluster}"


def token_record_key(digest: str) -> str:
    """Where a token's record is kept; `digest` is the sha256 of the token, never the token."""
    return f"{TOKENS}{digest}"


def secret_key(project: str, name: str) -> str:
    return f"{SECRETS}{project}/{name}"


def secrets_prefix(project: str) -> str:
    return f"{SECRETS}{project}/"


def blob_owners_key(digest: str) -> str:
    return f"{BLOB_OWNERS}{digest}"


def ui_login_key(digest: str) -> str:
    """Where a one-time UI login code is kept; `digest` is the sha256 of the code."""
    return f"{UI_LOGINS}{digest}"


def condition_key(run: str, action: str, name: str) -> str:
    return f"{CONDITIONS}{run}/{action}/{name}"


def condition_hook_key(run: str, action: str, name: str) -> str:
    return f"{CONDITION_HOOKS}{run}/{action}/{name}"


def conditions_prefix(run: str) -> str:
    return f"{CONDITIONS}{run}/"


def trigger_key(project: str, domain: str, task: str, name: str) -> str:
    return f"{TRIGGERS}{project}/{domain}/{task}/{name}"


def triggers_prefix(project: str, domain: str) -> str:
    return f"{TRIGGERS}{project}/{domain}/"


def notify_rules_key(run: str) -> str:
    return f"{NOTIFY_RULES}{run}"


def deliveries_key(run: str) -> str:
    return f"{DELIVERIES}{run}"


def blob_seen_key(digest: str) -> str:
    return f"{BLOB_SEEN}{digest}"


def log_chunk_key(run: str, action: str, attempt: int, stamp: str) -> str:
    return f"{LOGS}{run}/{action}/{attempt:06d}/{stamp}"


def logs_prefix(run: str, action: str | None = None, attempt: int | None = None) -> str:
    """A run's logs, or one action's, or one attempt's."""
    if action is None:
        return f"{LOGS}{run}/"
    return f"{LOGS}{run}/{action}/" if attempt is None else f"{LOGS}{run}/{action}/{attempt:06d}/"
