"""The rollout verbs: drive CanaryDeployments from a shell, the way Argo Rollouts' kubectl plugin does.

``create``, ``get``, ``status`` (``-w`` watches, ``--wait-for`` blocks), ``set weight``,
``promote``, ``abort`` (held at 0% as ``Aborted``, kept), ``resume``, ``delete``; ``weight``
and ``replace`` are the old names of ``set weight`` and ``promote``. Every verb takes
``--kubeconfig``, ``--context`` and ``-n`` (default: the context's namespace), resolved
by ``canarylab.kube.resolve()``, and works as ``kubectl canarylab VERB`` too
(``canarylab.cli.kubectl``). They are thin wrappers over ``canarylab.rollout.Rollout``;
each changing verb can write to a record (``--record DIR``) so shell actions show up in
the postmortem next to the runbook's.

Exit codes (``canarylab.record.events.ExitCode``): 0 done; 1 an error before the verb
changed anything (no cluster, no such canary, the API refused the first request); 3
when it failed or was interrupted (SIGINT, SIGTERM) after it asked for a change (the
weight may be half applied: look at the canary); 64 bad input. SIGTERM is handled as
SIGINT: the verb stops waiting and exits with that code. ``status --wait-for`` exits 0
when the phase is reached, 2 when the canary ended at weight 0 instead (``Aborted`` or
gone), 3 when it ``Failed``, 1 on a timeout.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from canarylab.cli import kubectl_output as out
from canarylab.cli.codes import Command, Group
from canarylab.errors import CanarylabError
from canarylab.interrupts import sigterm_as_interrupt
from canarylab.model.decide import PHASES

if TYPE_CHECKING:
    from canarylab.kube import Target
    from canarylab.record.events import ExitCode
    from canarylab.rollout import Rollout
    from canarylab.rollout.status import RolloutStatus

POLL_S = 0.5
"""Seconds between reads while watching or waiting."""


class Progress:
    """What a wait shows on stderr: a spinner with the latest state on a terminal, else a line per change."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._status: Any = None
        self._last = ""

    def update(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self._status is not None:
            self._status.update(text)
        else:
            self.console.print(f"… {text}", highlight=False)

    @contextmanager
    def shown(self) -> Iterator[Progress]:
        if not self.console.is_terminal:
            yield self
            return
        with self.console.status(self._last or "waiting…") as status:
            self._status = status
            try:
                yield self
            finally:
                self._status = None


class Watch:
    """A recorder (``RecorderLike``) that notes whether a change was asked for.

    Forwards to the ``--record`` recorder when there is one, and shows each ``status``
    event (phase, applied weight, ready replicas) on ``progress`` while a verb waits.
    Every ``Rollout`` action is an ``action`` event: ``unchanged`` and ``error: …``
    results changed nothing, any other result (``requested``, ``created``, ``deleted`` …)
    may have.
    """

    def __init__(self, inner: Any = None, progress: Progress | None = None) -> None:
        self.inner = inner
        self.progress = progress
        self.changed = False

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        if self.progress is not None and kind == "status":
            self.progress.update(str(fields.get("message", "")))
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
            if watch.progress is None:
                return action()
            with watch.progress.shown():
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


def wait_verdict(snap: RolloutStatus, wanted: frozenset[str]) -> ExitCode | None:
    """``status --wait-for``: the exit code once it is decided, None to keep waiting.

    A ``Paused`` canary may resume (its driver renews the lease), so it is waited on;
    ``Aborted`` and a deleted canary are at weight 0 (2), ``Failed`` is not safe (3), and
    ``Replaced`` never turns into another phase (1).
    """
    from canarylab.record.events import ExitCode

    if not snap.exists:
        return ExitCode.ROLLED_BACK
    if not snap.observed or snap.deleting:
        return ExitCode.ROLLED_BACK if snap.deleting else None
    if snap.phase in wanted:
        return ExitCode.OK
    if snap.phase == "Failed":
        return ExitCode.UNSAFE
    if snap.phase == "Aborted":
        return ExitCode.ROLLED_BACK
    if snap.phase == "Replaced":
        return ExitCode.ERROR
    return None


# -- targeting -------------------------------------------------------------------------


def _target_options(fn: Any) -> Any:
    options = [
        click.option(
            "-n",
            "--namespace",
            default=None,
            help="Default: the context's namespace, else default.",
        ),
        click.option("--context", default=None, help="A context of the kubeconfig."),
        click.option(
            "--kubeconfig",
            type=click.Path(dir_okay=False),
            help="Default: $KUBECONFIG (merged), else ~/.kube/config, else the sandbox.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _record_option(fn: Any) -> Any:
    return click.option(
        "--record",
        "record_dir",
        type=click.Path(file_okay=False),
        help="Append the action to this record directory.",
    )(fn)


def _output_option(fn: Any) -> Any:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["wide", "json", "yaml", "name"]),
        default=None,
        help="wide: + Holder, Reason, Message; json/yaml: the object as stored.",
    )(fn)


@dataclass(frozen=True)
class Where:
    """The cluster and namespace a verb acts in."""

    target: Target
    namespace: str
    api: Any

    @classmethod
    def of(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Where:
        from canarylab.kube import resolve

        target = resolve(kubeconfig, context)
        return cls(target, namespace or target.namespace, target.api_client())

    def rollout(self, name: str, watch: Watch | None = None) -> Rollout:
        """The ``Rollout`` of canary NAME (its parent read from the object when it exists)."""
        from canarylab.rollout import Rollout

        obj = Rollout(self.namespace, name, kube=self.api).get()
        parent = obj["spec"]["parentDeployment"] if obj is not None else name
        return Rollout(self.namespace, parent, name=name, kube=self.api, recorder=watch)

    def objects(self, name: str | None, timeout: float | None = None) -> list[dict[str, Any]]:
        """NAME, or every CanaryDeployment of the namespace (``[]`` when NAME is absent)."""
        if name:
            obj = self.rollout(name).get()
            return [] if obj is None else [obj]
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from canarylab.rollout.manifest import RolloutError, api_reason
        from canarylab.rollout.status import GROUP, PLURAL, VERSION

        custom = client.CustomObjectsApi(self.api)
        try:
            items = custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, _request_timeout=timeout
            )
        except ApiException as err:
            hint = " (is the CRD installed? `canarylab install-crds`)" if err.status == 404 else ""
            raise RolloutError(
                f"could not list CanaryDeployments in {self.namespace}: {api_reason(err)}{hint}"
            ) from None
        return sorted(items["items"], key=lambda o: str(o["metadata"]["name"]))


def complete_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of NAME: the CanaryDeployments of the namespace, if it answers fast."""
    from click.shell_completion import CompletionItem

    p = ctx.params
    try:
        where = Where.of(p.get("kubeconfig"), p.get("context"), p.get("namespace"))
        names = [str(o["metadata"]["name"]) for o in where.objects(None, timeout=3)]
    except Exception:  # no cluster, a timeout: offer nothing rather than a traceback
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _watch(record_dir: str | None) -> Watch:
    recorder = None
    if record_dir:
        from canarylab.record import Recorder

        recorder = Recorder(record_dir)
    return Watch(recorder, Progress())


def _not_found(where: Where, name: str) -> click.ClickException:
    return click.ClickException(
        f"no CanaryDeployment {name!r} in namespace {where.namespace} "
        f"({where.target.describe()}); `canarylab get -n {where.namespace}` lists them"
    )


# -- showing ---------------------------------------------------------------------------


def show(objs: Sequence[Mapping[str, Any]], output: str | None, *, single: bool) -> str:
    """The text ``get``/``status`` print for ``objs`` with ``-o output``."""
    if output in ("json", "yaml", "name"):
        return out.render(objs, output, single=single)
    now = dt.datetime.now(dt.UTC)
    return out.table(objs, out.packaged_columns(), now, wide=output == "wide")


def _print(where: Where, name: str | None, output: str | None) -> None:
    objs = where.objects(name)
    if name and not objs:
        raise _not_found(where, name)
    if not objs and output not in ("json", "yaml"):
        click.echo(f"No CanaryDeployments found in {where.namespace} namespace.", err=True)
        return
    click.echo(show(objs, output, single=bool(name)))


def _follow(where: Where, name: str | None, output: str | None) -> None:
    """``-w``: print each object again whenever its phase, weights, replicas or reason change."""
    seen: dict[str, tuple[Any, ...]] = {}
    columns = out.packaged_columns()
    first = True
    try:
        with sigterm_as_interrupt():
            while True:
                objs = where.objects(name)
                if name and first and not objs:
                    raise _not_found(where, name)
                changed = [o for o in objs if seen.get(o["metadata"]["name"]) != out.watch_key(o)]
                for o in changed:
                    seen[o["metadata"]["name"]] = out.watch_key(o)
                if changed:
                    if output in ("json", "yaml", "name"):
                        sep = "---\n" if output == "yaml" and not first else ""
                        click.echo(sep + out.render(changed, output, single=True))
                    else:
                        now = dt.datetime.now(dt.UTC)
                        wide = output == "wide"
                        click.echo(out.table(changed, columns, now, wide=wide, headers=first))
                    first = False
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        return


_show_args: list[Callable[[Any], Any]] = [
    click.argument("name", required=False, shell_complete=complete_name),
    _target_options,
    _output_option,
    click.option("-w", "--watch", "follow", is_flag=True, help="Print again on every change."),
]


def _show_options(fn: Any) -> Any:
    for decorate in reversed(_show_args):
        fn = decorate(fn)
    return fn


@click.command("get", cls=Command)
@_show_options
def get(
    name: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    output: str | None,
    follow: bool,
) -> None:
    """Show CanaryDeployments (all in the namespace, or NAME), as `kubectl get cdep` does."""
    where = Where.of(kubeconfig, context, namespace)
    (_follow if follow else _print)(where, name, output)


@click.command("status", cls=Command)
@_show_options
@click.option(
    "--wait-for",
    "--until",
    "wait_for",
    multiple=True,
    type=click.Choice(PHASES, case_sensitive=False),
    help="Block until NAME reaches this phase (repeat for any of several); needs NAME.",
)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait-for waits.")
def status(
    name: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    output: str | None,
    follow: bool,
    wait_for: tuple[str, ...],
    timeout: float,
) -> None:
    """Show CanaryDeployments like `get`; with --wait-for, block until NAME reaches a phase.

    The wait shows phase, applied weight and ready replicas as they change, then prints
    NAME as `get` would. It exits 0 when the phase is reached, 2 when the canary ended at
    weight 0 instead (Aborted, deleted), 3 when it Failed, 1 on a timeout.
    """
    if wait_for and not name:
        raise click.UsageError("--wait-for needs a NAME")
    if wait_for and follow:
        raise click.UsageError("use one of -w and --wait-for")
    where = Where.of(kubeconfig, context, namespace)
    if not wait_for:
        (_follow if follow else _print)(where, name, output)
        return
    assert name is not None
    wanted = frozenset(p for p in PHASES if p.lower() in {w.lower() for w in wait_for})
    code = _wait(where, name, wanted, timeout)
    snap_objs = where.objects(name)
    if snap_objs:
        click.echo(show(snap_objs, output, single=True))
    sys.exit(int(code))


def _wait(where: Where, name: str, wanted: frozenset[str], timeout: float) -> ExitCode:
    from canarylab.record.events import ExitCode

    progress = Progress()
    r = where.rollout(name, Watch(None, progress))
    if not r.status().exists:
        raise _not_found(where, name)
    deadline = time.monotonic() + timeout
    goal = " or ".join(sorted(wanted))
    try:
        with sigterm_as_interrupt(), progress.shown():
            while True:
                snap = r.status()  # each change is a status event: Progress shows it
                code = wait_verdict(snap, wanted)
                if code is not None:
                    break
                if time.monotonic() > deadline:
                    click.secho(
                        f"error: timed out after {timeout:.0f}s waiting for phase {goal} "
                        f"({snap.brief()})",
                        fg="red",
                        err=True,
                    )
                    return ExitCode.ERROR
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        click.secho("error: interrupted (SIGINT/SIGTERM); nothing was changed", fg="red", err=True)
        return ExitCode.ERROR
    if code != ExitCode.OK:
        why = f"; {snap.problem}" if snap.problem else ""
        click.secho(f"error: {snap.brief()}, not {goal}{why}", fg="red", err=True)
    return code


# -- changing --------------------------------------------------------------------------


def _changing_options(fn: Any) -> Any:
    return _target_options(_record_option(fn))


@click.command("create", cls=Command)
@click.argument("name", required=False, shell_complete=complete_name)
@click.option(
    "-f",
    "--filename",
    type=click.File("r"),
    help="A CanaryDeployment manifest (YAML or JSON, several documents allowed; - for stdin).",
)
@click.option("--parent", help="The parent Deployment (default: NAME).")
@click.option("--version", "version", help="The canary's version label value.")
@click.option("--image", help="The canary's image (the parent's pod template with this image).")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="Set in the canary's container.")
@click.option("--replicas", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--weight", type=click.IntRange(0, 100), default=0, show_default=True)
@click.option(
    "--router", type=click.Choice(["apisix", "gatewayAPI"]), default="apisix", show_default=True
)
@click.option("--route", help="The ApisixRoute or HTTPRoute (default: the parent's name).")
@_changing_options
def create(
    name: str | None,
    filename: Any,
    parent: str | None,
    version: str | None,
    image: str | None,
    env: tuple[str, ...],
    replicas: int,
    weight: int,
    router: str,
    route: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
) -> None:
    """Create a CanaryDeployment from flags (NAME --version V --image I) or from -f FILE."""
    if filename is not None:
        if name or version or image or parent:
            raise click.UsageError("give either -f FILE or NAME with --version and --image")
        docs = _manifests(filename.read(), getattr(filename, "name", "-"))
        where = Where.of(kubeconfig, context, namespace)
        for doc in docs:
            click.echo(_create_object(where, doc, namespace))
        return
    if not name and not parent:
        raise click.UsageError("NAME (or --parent) is required, or use -f FILE")
    if not version or not image:
        raise click.UsageError("--version and --image are required (or use -f FILE)")
    pairs = dict(_pair(e) for e in env)
    where = Where.of(kubeconfig, context, namespace)
    from canarylab.rollout import Rollout

    watch = _watch(record_dir)
    the_name = name or str(parent)
    r = Rollout(where.namespace, parent or the_name, name=the_name, kube=where.api, recorder=watch)
    snap = drive(
        watch,
        lambda: r.create_canary(
            version=version,
            image=image,
            env=pairs,
            replicas=replicas,
            weight=weight,
            router=router,
            route=route,
        ),
    )
    verb = "created" if watch.changed else "unchanged"
    click.echo(f"canarydeployment.canarylab.io/{snap.name} {verb}")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--env")
    return key, value


def _manifests(text: str, source: str) -> list[dict[str, Any]]:
    """The CanaryDeployments of a manifest file; anything else is a usage error."""
    import yaml

    from canarylab.rollout.status import GROUP, KIND

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise click.UsageError(f"{source} is not YAML or JSON: {err}") from None
    if not docs:
        raise click.UsageError(f"{source} holds no object")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            got = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise click.UsageError(f"{source} document {i + 1} is a {got}, not a {KIND}")
        if not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
            raise click.UsageError(f"{source} document {i + 1}: apiVersion must be {GROUP}/…")
        if not (doc.get("metadata") or {}).get("name"):
            raise click.UsageError(f"{source} document {i + 1} has no metadata.name")
    return docs


def _create_object(where: Where, doc: dict[str, Any], asked: str | None) -> str:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from canarylab.rollout.manifest import api_reason
    from canarylab.rollout.status import GROUP, PLURAL, VERSION

    meta = doc.setdefault("metadata", {})
    ns = meta.get("namespace") or where.namespace
    if asked and ns != asked:
        raise click.UsageError(
            f"the manifest's namespace {ns!r} does not match -n {asked}: drop one of them"
        )
    meta["namespace"] = ns
    version = str(doc["apiVersion"]).split("/", 1)[1]
    if version != VERSION:
        raise click.UsageError(f"apiVersion must be {GROUP}/{VERSION}, not {doc['apiVersion']}")
    try:
        client.CustomObjectsApi(where.api).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, doc
        )
    except ApiException as err:
        raise click.ClickException(f"{meta['name']}: {api_reason(err)}") from None
    return f"canarydeployment.canarylab.io/{meta['name']} created"


def _weight(
    name: str,
    weight: int,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
    no_wait: bool,
    timeout: float,
) -> None:
    where = Where.of(kubeconfig, context, namespace)
    watch = _watch(record_dir)
    r = where.rollout(name, watch)
    snap = drive(watch, lambda: r.set_weight(weight, wait=not no_wait, timeout=timeout))
    click.echo(snap.brief())


_weight_args: list[Callable[[Any], Any]] = [
    click.argument("name", shell_complete=complete_name),
    click.argument("weight", type=click.IntRange(0, 100)),
    _changing_options,
    click.option("--no-wait", is_flag=True, help="Return once the spec is patched."),
    click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait."),
]


def _weight_command(name: str, hidden: bool) -> click.Command:
    fn: Any = _weight
    for decorate in reversed(_weight_args):
        fn = decorate(fn)
    return click.command(
        name,
        cls=Command,
        hidden=hidden,
        help="Send WEIGHT percent of traffic to canary NAME (waits until the route carries it).",
    )(fn)


@click.group("set", cls=Group)
def set_() -> None:
    """Change a CanaryDeployment (set weight NAME W)."""


set_.add_command(_weight_command("weight", hidden=False))


def _promote(
    name: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
    no_wait: bool,
    timeout: float,
) -> None:
    where = Where.of(kubeconfig, context, namespace)
    watch = _watch(record_dir)
    r = where.rollout(name, watch)
    click.echo(drive(watch, lambda: r.replace(wait=not no_wait, timeout=timeout)).brief())


def _promote_command(name: str, hidden: bool) -> click.Command:
    fn: Any = _promote
    decorators: list[Callable[[Any], Any]] = [
        click.argument("name", shell_complete=complete_name),
        _changing_options,
        click.option("--no-wait", is_flag=True, help="Return once promotion is requested."),
        click.option("--timeout", default=300.0, show_default=True),
    ]
    for decorate in reversed(decorators):
        fn = decorate(fn)
    return click.command(
        name,
        cls=Command,
        hidden=hidden,
        help="Promote canary NAME into its parent Deployment (waits for phase Replaced).",
    )(fn)


@click.command("abort", cls=Command)
@click.argument("name", shell_complete=complete_name)
@_changing_options
@click.option("--timeout", default=60.0, show_default=True)
def abort(
    name: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
    timeout: float,
) -> None:
    """Hold canary NAME at weight 0, all traffic on the parent (phase Aborted); keep it.

    `resume` goes back to its weight, `delete` removes it.
    """
    where = Where.of(kubeconfig, context, namespace)
    watch = _watch(record_dir)
    r = where.rollout(name, watch)
    snap = drive(watch, lambda: r.abort(keep=True, timeout=timeout))
    if not snap.exists:
        click.echo(f"{where.namespace}/{name}: absent, nothing to abort")
        return
    click.echo(snap.brief())


@click.command("resume", cls=Command)
@click.argument("name", shell_complete=complete_name)
@_changing_options
@click.option(
    "--weight", type=click.IntRange(0, 100), default=None, help="Default: its spec.weight."
)
@click.option("--no-wait", is_flag=True, help="Return once the spec is patched.")
@click.option("--timeout", default=60.0, show_default=True)
def resume(
    name: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
    weight: int | None,
    no_wait: bool,
    timeout: float,
) -> None:
    """Leave Aborted: back to the canary's weight (or --weight), waiting for the route."""
    where = Where.of(kubeconfig, context, namespace)
    watch = _watch(record_dir)
    r = where.rollout(name, watch)
    click.echo(drive(watch, lambda: r.resume(weight, wait=not no_wait, timeout=timeout)).brief())


@click.command("delete", cls=Command)
@click.argument("name", shell_complete=complete_name)
@_changing_options
@click.option("--no-wait", is_flag=True, help="Return once deletion is requested.")
@click.option("--timeout", default=60.0, show_default=True)
def delete(
    name: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    record_dir: str | None,
    no_wait: bool,
    timeout: float,
) -> None:
    """Delete canary NAME: the controller restores the route, then removes its objects."""
    where = Where.of(kubeconfig, context, namespace)
    watch = _watch(record_dir)
    r = where.rollout(name, watch)
    drive(watch, lambda: r.delete(wait=not no_wait, timeout=timeout))
    click.echo(f"canarydeployment.canarylab.io/{name} deleted")


COMMANDS: tuple[click.Command, ...] = (
    create,
    get,
    status,
    set_,
    _promote_command("promote", hidden=False),
    abort,
    resume,
    delete,
    _weight_command("weight", hidden=True),  # the old name of `set weight`
    _promote_command("replace", hidden=True),  # the old name of `promote`
)
"""The rollout verbs, in the order ``--help`` lists them."""
