"""``canarylab status | weight | replace | abort``: drive a CanaryDeployment from a shell.

Thin wrappers over ``canarylab.rollout.Rollout``; each verb can write to a record
(``--record DIR``) so shell actions show up in the postmortem next to the runbook's.

Exit codes (``canarylab.record.events.ExitCode``): 0 done; 1 an error before the verb
changed anything (no cluster, no such canary, the API refused the first request); 3
when it failed or was interrupted (SIGINT, SIGTERM) after it asked for a change (the
weight may be half applied: look at the canary); 64 bad input. SIGTERM is handled as
SIGINT: the verb stops waiting and exits with that code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from canarylab.cli.codes import Command
from canarylab.errors import CanarylabError
from canarylab.interrupts import sigterm_as_interrupt

if TYPE_CHECKING:
    from canarylab.record.events import ExitCode


class Watch:
    """A recorder (``RecorderLike``) that notes whether a change was asked for.

    Forwards to the ``--record`` recorder when there is one. Every ``Rollout`` action is
    an ``action`` event: ``unchanged`` and ``error: …`` results changed nothing, any
    other result (``requested``, ``created``, ``deleted`` …) may have.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.changed = False

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self.inner.event(kind, **fields) if self.inner is not None else {}

    def action(self, what: str, result: str, who: str | None = None, **details: Any) -> None:
        if result != "unchanged" and not result.startswith("error"):
            self.changed = True
        if self.inner is not None:
            self.inner.action(what, result, who, **details)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def verb_exit_code(err: BaseException | None, changed: bool) -> ExitCode:
    """The exit code of a verb that raised ``err`` (None: it succeeded)."""
    from canarylab.record.events import ExitCode

    if err is None:
        return ExitCode.OK
    return ExitCode.UNSAFE if changed else ExitCode.ERROR


def drive(watch: Watch, action: Callable[[], Any]) -> Any:
    """Run a verb's action; on an error or interrupt say why and exit with its code."""
    try:
        with sigterm_as_interrupt():
            return action()
    except (CanarylabError, KeyboardInterrupt) as err:
        from canarylab.record.events import ExitCode

        code = verb_exit_code(err, watch.changed)
        text = str(err) if isinstance(err, CanarylabError) else "interrupted (SIGINT/SIGTERM)"
        after = (
            "a change was already requested: check the canary (`canarylab status`)"
            if code == ExitCode.UNSAFE
            else "nothing was changed"
        )
        click.secho(f"error: {text}; {after}", fg="red", err=True)
        sys.exit(int(code))
    finally:
        watch.close()


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


def _rollout(
    name: str, namespace: str, kubeconfig: str | None, record_dir: str | None
) -> tuple[Any, Watch]:
    """The ``Rollout`` of canary NAME, and the ``Watch`` recording what it changes."""
    from canarylab.rollout import Rollout

    api = _api(kubeconfig)
    parent = name
    obj = Rollout(namespace, name, kube=api).get()
    if obj is not None:
        parent = obj["spec"]["parentDeployment"]
    recorder = None
    if record_dir:
        from canarylab.record import Recorder

        recorder = Recorder(record_dir)
    watch = Watch(recorder)
    return Rollout(namespace, parent, name=name, kube=api, recorder=watch), watch


def _api(kubeconfig: str | None) -> Any:
    from canarylab.kube import api_client

    return api_client(kubeconfig)


@click.command("status", cls=Command)
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
        items = [_rollout(name, namespace, kubeconfig, None)[0].get()]
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


@click.command("weight", cls=Command)
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
    r, watch = _rollout(name, namespace, kubeconfig, record_dir)
    snap = drive(watch, lambda: r.set_weight(weight, wait=not no_wait, timeout=timeout))
    click.echo(snap.brief())


@click.command("replace", cls=Command)
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
    r, watch = _rollout(name, namespace, kubeconfig, record_dir)
    click.echo(drive(watch, lambda: r.replace(wait=not no_wait, timeout=timeout)).brief())


@click.command("abort", cls=Command)
@click.argument("name")
@_options
@click.option("--timeout", default=60.0, show_default=True)
def abort(
    name: str, namespace: str, kubeconfig: str | None, record_dir: str | None, timeout: float
) -> None:
    """Roll canary NAME back: weight 0 (route 100% parent), then delete it."""
    r, watch = _rollout(name, namespace, kubeconfig, record_dir)
    drive(watch, lambda: r.abort(timeout=timeout))
    click.echo(f"{namespace}/{name}: rolled back (route 100% parent, canary deleted)")


COMMANDS = (status, weight, replace, abort)
