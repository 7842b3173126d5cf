"""``canarylab demo``: the main job of ``make demo`` — a whole canary rollout on the sandbox.

Sandbox up → CRDs → controller → the sample app ("hello world" v1, Service,
ApisixRoute) in namespace ``demo`` → ``runbooks/canary-rollout.ipynb`` through
papermill with the probe on the sandbox gateway → executed notebook, record, summary
and a self-contained HTML report in ``out/demo`` (``DEMO_OUT`` overrides) → the
summary table, the paths, and one last line ``requests: N, failed: M``.

``--bad`` rolls out a canary answering 20% of requests with 500: the gates catch it,
the runbook rolls it back, and the demo succeeds when that is what happened.

The sandbox is left running afterwards (notebooks can use it; ``canarylab sandbox
down`` stops it, or pass ``--down``); the controller this command started is stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from canarylab.cli.paths import shipped

NAMESPACE = "demo"
PARENT = "hello"


def runbook_path() -> Path:
    """``runbooks/canary-rollout.ipynb`` of this checkout, else of the installed wheel."""
    return shipped("runbooks") / "canary-rollout.ipynb"


def demo_parameters(
    out: Path, kubeconfig: Path, bad: bool, hold: float, rate: float
) -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "parent": PARENT,
        "image": "canarylab/demo:v2",
        "version": "v2",
        "replicas": 3,
        "canary_env": {
            "DEMO_MESSAGE": "hello Hongbo",
            **({"DEMO_ERROR_RATE": "0.2"} if bad else {}),
        },
        "steps": [5, 25, 50, 100],
        "hold": hold,
        "probe_rate": rate,
        "kubeconfig": str(kubeconfig),
        "output_dir": str(out),
    }


@click.command()
@click.option(
    "--bad", is_flag=True, help="Roll out a canary with a 20% error rate; the gates must catch it."
)
@click.option("--hold", default=15.0, show_default=True, help="Seconds per step.")
@click.option("--rate", default=200.0, show_default=True, help="Probe requests per second.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output directory (default: $DEMO_OUT or out/demo[-bad]).",
)
@click.option(
    "--down", is_flag=True, help="Stop the sandbox afterwards (default: leave it running)."
)
def demo(bad: bool, hold: float, rate: float, out_dir: str | None, down: bool) -> None:
    """Run a whole canary rollout on the local sandbox (see `make demo`)."""
    from canarylab.cli.run import execute
    from canarylab.sandbox import Sandbox

    console = Console()
    started = time.monotonic()
    out = Path(out_dir or os.environ.get("DEMO_OUT") or ("out/demo-bad" if bad else "out/demo"))
    _fresh_output(out)
    sb = Sandbox(progress=lambda message: console.log(message))
    sb.up()
    controller: subprocess.Popen[bytes] | None = None
    try:
        api = _api(sb.kubeconfig)
        from canarylab.rollout import sample_app

        _install_crds(api)
        # The route's CRD first: the controller watches ApisixRoutes from its start.
        if sample_app.ensure_apisix_crd(api) == "stand-in":
            console.log("no real APISIX CRDs found: installed a schema-less ApisixRoute stand-in")
        controller = _start_controller(sb.kubeconfig, out / "controller.log")
        console.log(f"controller started (pid {controller.pid}, log {out / 'controller.log'})")
        _fresh_namespace(api, console)
        sample_app.deploy(api, NAMESPACE, name=PARENT, version="v1", replicas=3)
        sample_app.wait_parent_ready(api, NAMESPACE, PARENT)
        console.log(
            f'Deployment {NAMESPACE}/{PARENT} ("hello world" v1) ready behind ApisixRoute {PARENT}'
        )
        params = demo_parameters(out, sb.kubeconfig, bad, hold, rate)
        notebook = out / "canary-rollout.ipynb"
        console.log(
            f"running {runbook_path()} (steps {params['steps']}, hold {hold:g}s, {rate:g} req/s)"
        )
        error = execute(
            runbook_path(), notebook, params, "python3", None, out / "record", quiet=False
        )
        if controller.poll() is not None:
            console.print(f"[red]the controller exited early; see {out / 'controller.log'}")
    finally:
        if controller is not None and controller.poll() is None:
            controller.terminate()
            try:
                controller.wait(15)
            except subprocess.TimeoutExpired:
                controller.kill()
        if down:
            sb.down()
    ok = _report(console, out, notebook, error, bad)
    if not down:
        console.print("the sandbox is still running: `canarylab sandbox down` stops it")
    console.print(f"demo finished in {time.monotonic() - started:.0f}s")
    totals = _totals(out)
    click.echo(f"requests: {totals['requests']}, failed: {totals['failed']}")
    if not ok:
        sys.exit(1)


def _report(console: Console, out: Path, notebook: Path, error: str | None, bad: bool) -> bool:
    """Print the summary and paths, write the HTML report; True when the demo went as meant."""
    import pandas as pd

    from canarylab import record
    from canarylab.record.events import Outcome

    meta = record.load(out / "record").metadata
    outcome = meta.get("outcome", "unknown")
    summary = out / "summary.csv"
    if summary.exists():
        console.print(step_table(pd.read_csv(summary)))
    html = out / "report.html"
    try:
        write_report(out / "record", html)
    except Exception as err:  # the rollout happened; say why the picture is missing
        console.print(f"[red]could not write the HTML report:[/] {escape(str(err))}")
        html = Path("")
    console.print(f"executed notebook: {notebook}")
    console.print(f"record:            {out / 'record'}")
    if html.name:
        console.print(f"report:            {html}")
    if bad:
        if outcome == Outcome.ROLLED_BACK:
            console.print("[green]the gates caught the bad canary and rolled it back:[/]")
            console.print(escape(str(error)))
            return True
        console.print(f"[red]expected a rollback, got outcome {outcome!r}:[/] {escape(str(error))}")
        return False
    if error is not None or outcome != Outcome.SUCCEEDED:
        console.print(f"[red]the rollout did not succeed ({outcome}):[/] {escape(str(error))}")
        return False
    console.print("[green]rollout succeeded: the parent now runs v2 and the canary is gone")
    return True


def write_report(record_dir: Path, html: Path) -> Path:
    """The self-contained postmortem report (``canarylab.plots.report``) of the record."""
    from canarylab.plots.replay import load
    from canarylab.plots.report import write_html

    return write_html(load(record_dir), html)


DEMO_FILES = {
    "record",
    "canary-rollout.ipynb",
    "summary.csv",
    "totals.json",
    "report.html",
    "controller.log",
}


def _fresh_output(out: Path) -> None:
    """Empty ``out`` for a new demo — only when it holds nothing but an earlier demo's files."""
    if out.exists():
        if not out.is_dir():
            raise click.ClickException(f"{out} exists and is not a directory; choose another --out")
        unknown = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES)
        if unknown:
            raise click.ClickException(
                f"{out} holds files a demo did not write ({', '.join(unknown[:5])}); "
                "choose an empty or new directory with --out or DEMO_OUT"
            )
        shutil.rmtree(out)  # a demo run is a fresh record, not a continuation
    out.mkdir(parents=True)


def _totals(out: Path) -> dict[str, int]:
    from canarylab import record

    try:
        return record.load(out / "record").totals
    except Exception:
        return {"requests": 0, "failed": 0}


def step_table(frame: Any) -> Table:
    """The runbook's summary (summary.csv) as a compact table that fits 80 columns."""
    import math

    def pct(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    def ms(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0f}"

    versions = [c.removeprefix("requests ") for c in frame.columns if c.startswith("requests ")]
    table = Table(
        "step", "weight", *versions, "canary share", "errors c/o", "p99 ms c/o", "verdict"
    )
    for _, row in frame.iterrows():
        counts = [
            str(int(row[f"requests {v}"])) if row[f"requests {v}"] == row[f"requests {v}"] else "0"
            for v in versions
        ]
        table.add_row(
            str(row["step"]),
            f"{row['weight']}%",
            *counts,
            pct(row["canary_share"]),
            f"{pct(row['canary_error_rate'])}/{pct(row['original_error_rate'])}",
            f"{ms(row['canary_p99_ms'])}/{ms(row['original_p99_ms'])}",
            str(row["verdict"]),
        )
    return table


def _api(kubeconfig: Path) -> Any:
    from canarylab.kube import api_client

    return api_client(kubeconfig)


def _install_crds(api: Any) -> None:
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from canarylab.cli.controller import crd_files

    ext = client.ApiextensionsV1Api(api)
    for path in crd_files():
        doc = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as err:
            if err.status != 409:
                raise
            current = ext.read_custom_resource_definition(doc["metadata"]["name"])
            doc["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(doc["metadata"]["name"], doc)


def _start_controller(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "from canarylab.cli import main; main()",
        "controller",
        "--kubeconfig",
        str(kubeconfig),
    ]
    with log.open("wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def _fresh_namespace(api: Any, console: Console, timeout: float = 90) -> None:
    """Delete what a previous demo left in the namespace (the controller restores routes)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    try:
        core.read_namespace(NAMESPACE)
    except ApiException as err:
        if err.status == 404:
            return
        raise
    console.log(f"removing namespace {NAMESPACE} left by an earlier demo")
    from canarylab.rollout import Rollout

    Rollout(NAMESPACE, PARENT, kube=api).delete(timeout=60)
    core.delete_namespace(NAMESPACE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(NAMESPACE)
        except ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(0.5)
    raise click.ClickException(f"namespace {NAMESPACE} still terminating after {timeout:.0f}s")
