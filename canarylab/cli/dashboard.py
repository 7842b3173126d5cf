"""``canarylab dashboard``: the step-through notebook served by voila, without code.

Runs voila in the foreground on loopback. One server serves many canaries: each page's
URL names its canary (``/?namespace=demo&parent=hello``), which the notebook reads from
the query string voila hands its kernel (``canarylab.widgets.session.requested_canary``);
``-n``/``--parent`` are the default for a URL that names none. The notebook connects like
every canarylab entry point (``--kubeconfig``/``KUBECONFIG``, else the running sandbox)
and records each canary into ``<--record>/<namespace>/<canary>``. Never starts a sandbox
or a controller itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from canarylab.cli.paths import shipped

NOTEBOOK = shipped("notebooks") / "step-through.ipynb"


def voila_command(notebook: Path, port: int, ip: str, open_browser: bool) -> list[str]:
    """The voila command line (voila from this Python's environment)."""
    args = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--strip_sources=True",
        "--theme=light",
    ]
    if not open_browser:
        args.append("--no-browser")
    return args


@click.command()
@click.option("--port", default=8866, show_default=True, help="Port to serve on.")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--notebook",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Notebook to serve (default: the step-through notebook of this checkout or wheel).",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Cluster (default: sandbox).")
@click.option("-n", "--namespace", help="Namespace of the canary a URL without ?namespace= shows.")
@click.option("--parent", help="Parent Deployment a URL without ?parent= shows.")
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False),
    help="Records go to DIR/<namespace>/<canary> (default: out/step-through).",
)
@click.option("--open/--no-open", "open_browser", default=False, help="Open a browser.")
def dashboard(
    port: int,
    ip: str,
    notebook: Path | None,
    kubeconfig: str | None,
    namespace: str | None,
    parent: str | None,
    record_dir: str | None,
    open_browser: bool,
) -> None:
    """Serve the step-through notebook as a dashboard (voila): slider, buttons, live chart."""
    path = notebook or NOTEBOOK
    if not path.exists():
        raise click.ClickException(
            f"{path} not found: run from a canarylab checkout or pass --notebook PATH"
        )
    if shutil.which("voila") is None and not _has_voila():
        raise click.ClickException("voila is not installed: pip install 'voila>=0.5'")
    env = dict(os.environ)
    # voila runs the notebook as is (no papermill parameters): pass choices by environment.
    for key, value in (
        ("KUBECONFIG", kubeconfig),
        ("CANARYLAB_NAMESPACE", namespace),
        ("CANARYLAB_PARENT", parent),
        # the kernel runs in the notebook's directory (inside the wheel, when installed):
        # records go under where the command was started, never beside the notebook
        ("CANARYLAB_RECORD", record_dir or "out/step-through"),
    ):
        if value:
            env[key] = (
                str(Path(value).resolve()) if key in ("KUBECONFIG", "CANARYLAB_RECORD") else value
            )
    click.echo(
        f"serving {path.name} on http://{ip}:{port}/ — choose a canary with "
        "?namespace=NS&parent=NAME (Ctrl-C stops)"
    )
    os.execve(sys.executable, voila_command(path, port, ip, open_browser), env)


def _has_voila() -> bool:
    import importlib.util

    return importlib.util.find_spec("voila") is not None
