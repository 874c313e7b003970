"""`flyte agent serve`: run one cluster's agent. The agent package is imported only inside the command."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Literal, NoReturn

import click

from flyte._collector import collect_less_often
from flyte._paths import flyte_home
from flyte._resources import parse_cpu, parse_quantity

from ._errors import CliUsageError
from ._labels import parse_labels

TOKEN_ENV = "FLYTE_AGENT_TOKEN"


@click.group()
def agent() -> None:
    """Run a cluster's agent."""


@agent.command("serve")
@click.option(
    "--gateway",
    "gateway_url",
    required=True,
    metavar="URL[,URL...]",
    help="The gateway's endpoint, or every replica's (comma-separated): the agent moves to the next when one is lost.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="A file holding a token with scope agent:CLUSTER (mode 0600; '-': read it from stdin). "
    "Without it, the token is read from FLYTE_AGENT_TOKEN, which is then removed from the environment.",
)
@click.option("--token", default=None, hidden=True, help="Deprecated: on the command line, any process can read it.")
@click.option("--cluster", required=True, help="This cluster's name.")
@click.option("--region", default="local", show_default=True)
@click.option("--cloud", default="local", show_default=True)
@click.option("--label", "labels", multiple=True, callback=parse_labels, metavar="KEY=VALUE")
@click.option("--backend", type=click.Choice(["process", "kubernetes"]), default="process", show_default=True)
@click.option("--cpu", default="2", show_default=True, help="CPU this agent offers.")
@click.option("--memory", default="8Gi", show_default=True, help="Memory this agent offers.")
@click.option("--gpu", default=None, help="GPUs this agent offers, e.g. A100:2.")
@click.option("--cost-cpu-hour", default=0.0, show_default=True, type=click.FloatRange(0), help="For the cost scorer.")
@click.option("--cost-gpu-hour", default=0.0, show_default=True, type=click.FloatRange(0), help="For the cost scorer.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--namespace", default=None, help="kubernetes: where pods go [the service account's, else flyte].")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="kubernetes: the cluster's kubeconfig; without it, the pod's service account (in-cluster).",
)
@click.option("--default-image", default=None, help="kubernetes: the image of environments without an image URI.")
@click.option(
    "--spares",
    default=2,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Workers started ahead of time, SDK imported, for one-off actions (0: start each cold).",
)
@click.option(
    "--default-cpu",
    default="100m",
    show_default=True,
    help="The CPU a one-off task that declares no request counts as holding (placement and admission).",
)
@click.option(
    "--default-memory",
    default="256Mi",
    show_default=True,
    help="The memory a one-off task that declares no request counts as holding.",
)
@click.option(
    "--max-processes",
    default=None,
    type=click.IntRange(1),
    help="One-off worker processes live at once, at most [4 per core, and no more than --cpu / --default-cpu].",
)
@click.option(
    "--max-starting",
    default=None,
    type=click.IntRange(1),
    help="Worker processes starting at once (interpreter and SDK imports), at most [2 per core].",
)
@click.option(
    "--run-as",
    "run_as_user",
    default=None,
    metavar="USER",
    help="process: start every task process as USER, not as the agent's user (the agent must run as root).",
)
@click.option(
    "--blobs",
    "blobs_url",
    default=None,
    metavar="URL",
    help="The object store this cluster keeps its data in (s3://BUCKET/PREFIX, also gs://, az://): its workers "
    "write new blobs there. The gateway signs its URLs, so the gateway's credentials must reach it [the gateway's].",
)
@click.option(
    "--blobs-endpoint",
    default=None,
    metavar="URL",
    help="That store's endpoint, for an S3-compatible server (plain http only on a loopback address).",
)
def serve(
    gateway_url: str,
    token_file: Path | None,
    token: str | None,
    cluster: str,
    region: str,
    cloud: str,
    labels: dict[str, str],
    backend: str,
    cpu: str,
    memory: str,
    gpu: str | None,
    cost_cpu_hour: float,
    cost_gpu_hour: float,
    work_dir: Path | None,
    namespace: str | None,
    kubeconfig: Path | None,
    default_image: str | None,
    spares: int,
    default_cpu: str,
    default_memory: str,
    max_processes: int | None,
    max_starting: int | None,
    run_as_user: str | None,
    blobs_url: str | None,
    blobs_endpoint: str | None,
) -> None:
    """Connect to the gateway and run the actions it assigns to this cluster, until SIGTERM or Ctrl-C."""
    # First: a token in the environment starts this process again without it, and the agent's modules (half a
    # second to import) would load twice.
    token = _read_token(token_file, token)
    from agent import Agent, UnsafeDirectory
    from agent._admission import Admission
    from agent.backends import Backend, ProcessBackend
    from agent.backends._run_as import RunAs
    from flyte._wire import ClusterRecord

    run_as = None
    if run_as_user is not None:
        if backend != "process":
            raise CliUsageError("--run-as is for the process backend (pods run as their security context says)")
        try:
            run_as = RunAs.lookup(run_as_user)
        except ValueError as exc:
            raise CliUsageError(str(exc)) from None
    try:
        capacity = {"cpu": parse_cpu(cpu), "memory": float(parse_quantity(memory))}
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    try:
        default_request: dict[Literal["cpu", "memory"], float] = {
            "cpu": parse_cpu(default_cpu),
            "memory": float(parse_quantity(default_memory)),
        }
        if default_request["memory"] <= 0:
            raise ValueError(f"{default_memory!r} must be > 0")
    except ValueError as exc:
        raise CliUsageError(f"--default-cpu/--default-memory: {exc}") from None
    if blobs_endpoint is not None and blobs_url is None:
        raise CliUsageError("--blobs-endpoint is for the cluster's object store: give --blobs s3://BUCKET/PREFIX too")
    if blobs_url is not None and not blobs_url.startswith(("s3://", "gs://", "az://")):
        raise CliUsageError(
            f"--blobs {blobs_url}: a cluster's store is an object store, s3://BUCKET/PREFIX (or gs://, az://)"
        )
    if gpu:
        kind, _, count = gpu.partition(":")
        capacity[f"gpu:{kind}"] = float(count or 1)
        capacity["gpu"] = float(count or 1)
    try:
        record = ClusterRecord(
            name=cluster,
            region=region,
            cloud=cloud,
            labels=labels,
            capacity=capacity,
            free=capacity,
            cost_per_cpu_hour=cost_cpu_hour,
            cost_per_gpu_hour=cost_gpu_hour,
            default_request=default_request,
            blobs=blobs_url,
            blobs_endpoint=blobs_endpoint,
        )
    except ValueError as exc:
        raise CliUsageError(str(exc).splitlines()[0]) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = work_dir or flyte_home() / "agents" / cluster

    async def main() -> None:
        admission = Admission.for_cluster(capacity["cpu"], default_request["cpu"], max_processes, max_starting)
        try:
            instance = Agent(gateway_url, token, record, await _backend(), directory, spares, admission)
        except UnsafeDirectory as error:
            raise CliUsageError(f"refusing to start: {error}") from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, instance.stop)
        print(
            f"flyte agent {cluster} serving {gateway_url} (at most {admission.max_processes} one-off processes,"
            f" {admission.max_starting} starting at once)",
            flush=True,
        )
        await instance.run()

    async def _backend() -> Backend:
        if backend == "process":
            return ProcessBackend(run_as=run_as)
        # Capacity is the cluster's (nodes less pods), measured by the backend; --cpu/--memory are not used.
        from agent.backends._kubernetes import DEFAULT_IMAGE, KubernetesBackend

        pods = KubernetesBackend(
            owner=cluster, namespace=namespace, kubeconfig=kubeconfig, default_image=default_image or DEFAULT_IMAGE
        )
        try:
            await pods.start()
        except ConnectionError as exc:
            raise CliUsageError(str(exc)) from None
        return pods

    collect_less_often()
    asyncio.run(main())


def _restart_without(token: str) -> NoReturn:
    """Replace this process with itself, minus the token in its environment; the token comes through a pipe."""
    read, write = os.pipe()
    os.write(write, token.encode())  # a token is far smaller than a pipe's buffer
    os.close(write)
    os.set_inheritable(read, True)
    argv = [sys.executable, "-m", "flyte.cli", *sys.argv[1:], "--token-file", f"/dev/fd/{read}"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, dict(os.environ))


def _read_token(token_file: Path | None, token: str | None) -> str:
    """The agent's token from a file, stdin or FLYTE_AGENT_TOKEN; never left where a task process could read it.

    A variable cannot simply be deleted: the kernel keeps the environment a process started with, readable at
    /proc/PID/environ by every process of the same user (its tasks, on the process backend). So an agent given its
    token in FLYTE_AGENT_TOKEN starts itself again, same pid, without it, and takes the token through a pipe.
    """
    from_env = os.environ.pop(TOKEN_ENV, None)
    if from_env and token is None and token_file is None and os.path.isdir("/dev/fd"):
        _restart_without(from_env)
    if token is not None:
        click.echo(
            "warning: --token puts the token on the command line, where every local process can read it; "
            "use --token-file or FLYTE_AGENT_TOKEN",
            err=True,
        )
        return token.strip()
    if token_file is not None:
        if str(token_file) == "-":
            text = sys.stdin.readline()
        else:
            try:
                mode = token_file.stat().st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise CliUsageError(f"{token_file} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
                text = token_file.read_text()
            except OSError as error:
                raise CliUsageError(f"cannot read the token file {token_file}: {error.strerror}") from None
        if not text.strip():
            raise CliUsageError(f"the token file {token_file} is empty")
        return text.strip()
    if from_env:
        return from_env.strip()
    raise CliUsageError(f"give the agent its token: --token-file PATH, --token-file - (stdin) or {TOKEN_ENV}")
