"""`explain(decision)`: every cluster's verdict and score as a small text table, the chosen one first."""

from __future__ import annotations

from ._model import Decision


def explain(decision: Decision) -> str:
    """A table: cluster, score (blank when it was not ranked), verdict; chosen, then by score, then by name."""
    head = f"{decision.reason} [policy {decision.policy_version or '?'}]"
    if decision.never_fits:
        head = "never fits: " + head
    elif decision.cluster is None:
        head = "waiting: " + head
    rows = sorted(
        decision.verdicts.items(),
        key=lambda kv: (kv[0] != decision.cluster, -decision.scores.get(kv[0], -1.0), kv[0]),
    )
    width = max([len("CLUSTER")] + [len(name) for name, _ in rows])
    lines = [head, f"{'CLUSTER':<{width}}  {'SCORE':>6}  VERDICT"]
    for name, verdict in rows:
        score = decision.scores.get(name)
        shown = f"{score:6.3f}" if score is not None else " " * 6
        lines.append(f"{name:<{width}}  {shown}  {verdict}")
    return "\n".join(lines)
