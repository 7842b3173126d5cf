"""``canarylab sandbox up | down | status | kubeconfig``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console

from canarylab.sandbox import Sandbox, build

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Sandbox state directory (default: $CANARYLAB_SANDBOX_DIR or ~/.local/state/canarylab/sandbox).",
)


@click.group()
def sandbox() -> None:
    """Run a real local Kubernetes control plane (etcd, kube-apiserver,
    kube-controller-manager, kube-scheduler, kwok nodes)."""


@sandbox.command()
@state_dir_option
@click.option("--nodes", default=2, show_default=True, help="Number of kwok nodes.")
@click.option(
    "--pod-ready-delay-ms", default=1000, show_default=True, help="Simulated pod start time."
)
def up(state_dir: Path | None, nodes: int, pod_ready_delay_ms: int) -> None:
    """Start the sandbox (idempotent) and print where it is."""
    console = Console(stderr=True)
    started = time.monotonic()
    # Build first, outside the spinner: a cold build gets one progress bar across every
    # component (a line per tenth of it when stderr is not a terminal); then `up` finds
    # the binaries cached.
    build.ensure_built(progress=build.progress_for(console))
    with console.status("starting sandbox…"):
        sb = Sandbox(
            state_dir, nodes=nodes, pod_ready_delay_ms=pod_ready_delay_ms, progress=console.log
        ).up()
    info = sb.status()
    click.echo(f"sandbox ready in {time.monotonic() - started:.1f}s")
    click.echo(f"  server:     {info['server']}")
    click.echo(f"  kubeconfig: {info['kubeconfig']}")
    if info.get("gateway"):
        click.echo(f"  gateway:    {info['gateway']}")
    if info.get("prometheus"):
        click.echo(f"  prometheus: {info['prometheus']}")
    click.echo(f"  state:      {info['state_dir']}")
    click.echo(f"  use it:     export KUBECONFIG={info['kubeconfig']}")


@sandbox.command()
@state_dir_option
@click.option(
    "--purge", is_flag=True, help="Also delete the state directory (etcd data, PKI, logs)."
)
def down(state_dir: Path | None, purge: bool) -> None:
    """Stop exactly the processes the sandbox started."""
    sb = Sandbox(state_dir)
    sb.down(purge=purge)
    click.echo(f"sandbox stopped{' and purged' if purge else ''} ({sb.state_dir})")


@sandbox.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show the sandbox's components, server and kubeconfig."""
    info = Sandbox(state_dir).status()
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"state:      {info['state_dir']}")
    click.echo(f"running:    {'yes' if info['running'] else 'no'}")
    click.echo(f"server:     {info['server'] or '-'}")
    click.echo(f"kubeconfig: {info['kubeconfig'] or '-'}")
    if info.get("gateway"):
        click.echo(f"gateway:    {info['gateway']}")
    if info.get("prometheus"):
        click.echo(f"prometheus: {info['prometheus']}")
        click.echo(f"controller metrics port: {info['controller_metrics_port']} (scraped)")
    for comp in info["components"]:
        mark = "alive" if comp["alive"] else "DEAD"
        click.echo(f"  {comp['name']:<24} pid {comp['pid']:<8} {mark}")
    click.echo("versions:   " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))


@sandbox.command()
@state_dir_option
def kubeconfig(state_dir: Path | None) -> None:
    """Print the admin kubeconfig's path: KUBECONFIG=$(canarylab sandbox kubeconfig)."""
    sb = Sandbox(state_dir)
    if not sb.kubeconfig.exists():
        raise click.ClickException(
            f"no running sandbox in {sb.state_dir}; run `canarylab sandbox up` first"
        )
    click.echo(str(sb.kubeconfig))
