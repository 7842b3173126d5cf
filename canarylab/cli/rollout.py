"""``canarylab status | weight | replace | abort``: drive a CanaryDeployment from a shell.

Thin wrappers over ``canarylab.rollout.Rollout``; each verb can write to a record
(``--record DIR``) so shell actions show up in the postmortem next to the runbook's.
"""

from __future__ import annotations

import json
from typing import Any

import click

_common = [
    click.option("-n", "--namespace", default="default", show_default=True),
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        help="Default: $KUBECONFIG, else the sandbox.",
    ),
    click.option(
        "--record",
        "record_dir",
        type=click.Path(file_okay=False),
        help="Append the action to this record directory.",
    ),
]


def _options(fn: Any) -> Any:
    for option in reversed(_common):
        fn = option(fn)
    return fn


def _rollout(name: str, namespace: str, kubeconfig: str | None, record_dir: str | None) -> Any:
    from canarylab.rollout import Rollout

    recorder = None
    if record_dir:
        from canarylab.record import Recorder

        recorder = Recorder(record_dir)
    api = _api(kubeconfig)
    parent = name
    obj = Rollout(namespace, name, kube=api).get()
    if obj is not None:
        parent = obj["spec"]["parentDeployment"]
    return Rollout(namespace, parent, name=name, kube=api, recorder=recorder)


def _api(kubeconfig: str | None) -> Any:
    from canarylab.kube import api_client

    return api_client(kubeconfig)


@click.command("status")
@click.argument("name", required=False)
@_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(
    name: str | None, namespace: str, kubeconfig: str | None, record_dir: str | None, as_json: bool
) -> None:
    """Show CanaryDeployments (all in the namespace, or NAME)."""
    from kubernetes import client

    from canarylab.rollout.status import GROUP, PLURAL, VERSION, parse

    api = _api(kubeconfig)
    custom = client.CustomObjectsApi(api)
    if name:
        items = [_rollout(name, namespace, kubeconfig, None).get()]
        if items[0] is None:
            raise click.ClickException(f"no CanaryDeployment {namespace}/{name}")
    else:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    snaps = [parse(obj) for obj in items if obj]
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in snaps], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "phase", "weight", "applied", "ready", "problem")
    for s in snaps:
        applied = "-" if s.applied_weight is None else str(s.applied_weight)
        table.add_row(
            s.name,
            s.version,
            s.phase or "-",
            str(s.desired_weight),
            applied,
            f"{s.ready_replicas}/{s.replicas}",
            s.problem,
        )
    if not snaps:
        click.echo(f"no CanaryDeployments in namespace {namespace}")
        return
    Console().print(table)


@click.command("weight")
@click.argument("name")
@click.argument("weight", type=click.IntRange(0, 100))
@_options
@click.option("--no-wait", is_flag=True, help="Return once the spec is patched.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the route.")
def weight(
    name: str,
    weight: int,
    namespace: str,
    kubeconfig: str | None,
    record_dir: str | None,
    no_wait: bool,
    timeout: float,
) -> None:
    """Send WEIGHT percent of traffic to canary NAME (waits until the route carries it)."""
    r = _rollout(name, namespace, kubeconfig, record_dir)
    snap = r.set_weight(weight, wait=not no_wait, timeout=timeout)
    click.echo(snap.brief())


@click.command("replace")
@click.argument("name")
@_options
@click.option("--no-wait", is_flag=True, help="Return once replace is requested.")
@click.option("--timeout", default=300.0, show_default=True)
def replace(
    name: str,
    namespace: str,
    kubeconfig: str | None,
    record_dir: str | None,
    no_wait: bool,
    timeout: float,
) -> None:
    """Promote canary NAME into its parent Deployment (waits for phase Replaced)."""
    r = _rollout(name, namespace, kubeconfig, record_dir)
    click.echo(r.replace(wait=not no_wait, timeout=timeout).brief())


@click.command("abort")
@click.argument("name")
@_options
@click.option("--timeout", default=60.0, show_default=True)
def abort(
    name: str, namespace: str, kubeconfig: str | None, record_dir: str | None, timeout: float
) -> None:
    """Roll canary NAME back: weight 0 (route 100% parent), then delete it."""
    r = _rollout(name, namespace, kubeconfig, record_dir)
    r.abort(timeout=timeout)
    click.echo(f"{namespace}/{name}: rolled back (route 100% parent, canary deleted)")


COMMANDS = (status, weight, replace, abort)
