"""Placement from the shell: `flyte get placement|clusters`, `flyte policy get|apply|simulate` and
`flyte cluster cordon|uncordon|drain`. All of them talk to the configured gateway."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

from ._errors import CliError, CliUsageError
from ._inspect import _init, _when, get
from ._output import OutputFormat, format_duration, output_option, print_listing

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str = "--since") -> float:
    """'90s', '30m', '1h', '2d' as seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise CliUsageError(f"{option} {text!r}: give a number above 0 and a unit, e.g. 30m, 1h or 2d")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _gateway_call(method: str, path: str, *, scoped: bool = False, **kwargs: Any) -> Any:
    """Call the gateway; `scoped`: the path names a run, by a name chosen in the configured project and domain."""
    _init()
    from flyte._client import GatewayError, call_sync, client_for
    from flyte._config import current_config

    if not current_config().is_remote:
        raise CliError("placement needs a gateway: `flyte rig up` or a config whose endpoint points at one")
    client = client_for()
    if scoped:
        kwargs["params"] = client.run_params()
    try:
        return call_sync(client.request(method, path, **kwargs))
    except GatewayError as exc:
        raise CliError(str(exc)) from None


@click.command("placement")
@click.argument("run_name", metavar="RUN")
@click.argument("action", default="a0")
def get_placement(run_name: str, action: str) -> None:
    """Why ACTION of RUN (the root action by default) went where it went, or why it waits: every cluster's
    verdict and score."""
    from flyte._wire import PlacementRecord
    from policies import Decision, amount_text, explain

    record = PlacementRecord.model_validate(
        _gateway_call("GET", f"/api/v1/runs/{run_name}/actions/{action}/placement", scoped=True)
    )
    demand = {k: v for k, v in record.demand.items() if v not in (0, 0.0, None, [], {}, "default")}
    inputs = demand.pop("input_bytes", [])
    click.echo(f"{run_name}/{action} attempt {record.attempt}, decided {_when(record.decided_at)}")
    shown = [
        f"{k.removesuffix('_seconds')}={format_duration(v)}"
        if k.endswith("_seconds")
        else f"{k}={amount_text(k, v).replace(' ', '')}"
        if k == "memory"
        else f"{k}={v}"
        for k, v in sorted(demand.items())
    ]
    click.echo("demand: " + (", ".join(shown) or "nothing in particular"))
    if inputs:
        _show_input_bytes(inputs, record.snapshots)
    decision = Decision(
        record.cluster,
        record.never_fits,
        record.reason,
        record.verdicts,
        record.scores,
        record.policy_version,
        record.tier,
    )
    click.echo(explain(decision))


def _show_input_bytes(inputs: list[list[Any]], snapshots: list[dict[str, Any]]) -> None:
    """Where the action's input blobs are, and what each cluster would read from another region (data locality)."""
    from policies import amount_text, bytes_crossing, demand_from_dict

    held = ", ".join(
        f"{amount_text('memory', size).replace(' ', '')} in {region or '(gateway)'}" for region, size in inputs
    )
    click.echo(f"input blobs: {held}")
    demand = demand_from_dict({"input_bytes": inputs})
    crossing = [
        f"{s['name']} {amount_text('memory', bytes_crossing(demand, s['region'])).replace(' ', '')}" for s in snapshots
    ]
    if crossing:
        click.echo("bytes crossing regions: " + ", ".join(crossing))


@click.command("clusters")
@output_option
def get_clusters(output: OutputFormat) -> None:
    """Every registered cluster: where it is, its room, and whether it takes new work."""
    _init()
    import flyte
    from flyte._client import GatewayError

    try:
        clusters = flyte.remote.Cluster.listall()
    except GatewayError as exc:
        raise CliError(str(exc)) from None

    def room(c: flyte.remote.Cluster) -> str:
        cpu = f"cpu {c.free.get('cpu', 0):g}/{c.capacity.get('cpu', 0):g}" if c.capacity else "-"
        return cpu

    def state(c: flyte.remote.Cluster) -> str:
        if c.cordoned:
            return ("draining" if c.draining else "cordoned") + (f": {c.cordon_reason}" if c.cordon_reason else "")
        return "ready" if c.connected else "disconnected"

    rows = [[c.name, c.region, c.cloud, room(c), state(c)] for c in clusters]
    print_listing("clusters", ["cluster", "region", "cloud", "free", "state"], rows, output, objects=clusters)


@click.group("policy")
def policy() -> None:
    """The gateway's placement policy."""


@policy.command("get")
def policy_get() -> None:
    """Print the policy in force."""
    answer = _gateway_call("GET", "/api/v1/policy")
    click.echo(answer["text"], nl=not answer["text"].endswith("\n"))


@policy.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_apply(file: Path) -> None:
    """Validate FILE and make it the policy in force (the next placement uses it; no restart)."""
    from flyte._wire import PolicyDocument
    from policies import parse_policy

    text = file.read_text()
    try:
        parse_policy(text, file.name)
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    answer = _gateway_call("PUT", "/api/v1/policy", json_body=PolicyDocument(text=text))
    click.echo(f"policy {answer['version']} applied")


@policy.command("simulate")
@click.option("--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", default="1h", show_default=True, help="Replay decisions made this long ago, e.g. 30m, 2d.")
def policy_simulate(policy_file: Path, since: str) -> None:
    """Replay recorded placement decisions under another policy and show what would change."""
    from flyte._wire import PlacementRecord
    from policies import Recorded, amount_text, load_policy, simulate

    try:
        candidate = load_policy(policy_file)
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    start = time.time() - parse_duration(since)
    raw = _gateway_call("GET", "/api/v1/placements", params={"since": f"{start:.3f}"})
    records = [PlacementRecord.model_validate(r) for r in raw]
    sim = simulate((Recorded(r.demand, list(r.snapshots), r.cluster, r.never_fits) for r in records), candidate)
    current = {r.policy_version for r in records} or {"(none)"}
    click.echo(
        f"replayed {sim.replayed} decisions from the last {since} (policy {', '.join(sorted(current))}) "
        f"under {candidate.version}: {sim.changed} would change"
        + (f"; {sim.skipped} recorded without snapshots were skipped" if sim.skipped else "")
    )
    if not sim.replayed:
        return
    b, a = sim.before, sim.after
    clusters = sorted(set(b.placed) | set(a.placed))
    rows = [[name, str(b.placed[name]), str(a.placed[name])] for name in clusters]
    rows += [
        ["(waits: queued longer)", str(b.waiting), str(a.waiting)],
        ["(never fits: fails)", str(b.never_fits), str(a.never_fits)],
        ["cost per hour", f"{b.cost_per_hour:.2f}", f"{a.cost_per_hour:.2f}"],
        ["regions used", str(len(b.regions)), str(len(a.regions))],
        ["largest region share", f"{b.spread():.0%}", f"{a.spread():.0%}"],
        [
            "input bytes crossing regions",
            amount_text("memory", b.bytes_crossing),
            amount_text("memory", a.bytes_crossing),
        ],
    ]
    print_listing("what would change", ["", "recorded", candidate.version], rows)
    if sim.moves:
        moves = [[was, now, str(n)] for (was, now), n in sim.moves.most_common(20)]
        print_listing("moves", ["from", "to", "decisions"], moves)


@click.group("cluster")
def cluster() -> None:
    """Cordon, drain and uncordon clusters."""


def _cordon(name: str, reason: str, drain: bool) -> None:
    from flyte._wire import CordonRequest

    try:
        body = CordonRequest(reason=reason, drain=drain)
    except ValueError as exc:
        raise CliUsageError(f"--reason: {str(exc).splitlines()[0]}") from None
    _gateway_call("POST", f"/api/v1/clusters/{name}/cordon", json_body=body)
    click.echo(f"{name}: {'draining' if drain else 'cordoned'} ({reason})")


@cluster.command("cordon")
@click.argument("name")
@click.option("--reason", required=True, help="Why; shown with the cluster and in waiting actions' reasons.")
def cluster_cordon(name: str, reason: str) -> None:
    """No new work lands on NAME; queued work waits or goes elsewhere; running work finishes."""
    _cordon(name, reason, drain=False)


@cluster.command("drain")
@click.argument("name")
@click.option("--reason", required=True)
def cluster_drain(name: str, reason: str) -> None:
    """Cordon NAME and move its placed work that has not started elsewhere; running work finishes."""
    _cordon(name, reason, drain=True)


@cluster.command("uncordon")
@click.argument("name")
def cluster_uncordon(name: str) -> None:
    """Let new work land on NAME again."""
    _gateway_call("POST", f"/api/v1/clusters/{name}/uncordon")
    click.echo(f"{name}: ready")


# `get`'s placement subcommands live here, beside their helpers; `flyte get` is looked up through this module.
get.add_command(get_placement)
get.add_command(get_clusters)
