"""``canarylab run RUNBOOK -p name value …``: papermill, with a progress bar per step.

The runbook runs exactly as plain ``papermill`` would run it (same parameters, the
kernel set explicitly to ``python3`` so a kernelspec name stored in a notebook cannot
break a run); this command adds output naming, a live progress bar per rollout step
(read from the record the runbook writes) and an exit code: 0 when the runbook
finished, 1 when a cell failed (a gate, an error), 2 for bad input.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

RUNBOOK_DIRS = (Path("runbooks"),)


def find_runbook(name: str) -> Path:
    """A path as given, else ``runbooks/<name>[.ipynb]``."""
    candidates = [Path(name)]
    for folder in RUNBOOK_DIRS:
        candidates += [folder / name, folder / f"{name}.ipynb"]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for d in RUNBOOK_DIRS if d.is_dir() for p in d.glob("*.ipynb"))
    raise click.BadParameter(
        f"no runbook {name!r}" + (f"; known runbooks: {', '.join(known)}" if known else ""),
        param_hint="RUNBOOK",
    )


def parse_value(raw: str) -> Any:
    """A parameter value as YAML (``5``, ``[5, 25]``, ``true``, ``{a: 1}``), else the string."""
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def output_path(runbook: Path, params: dict[str, Any], output: str | None) -> Path:
    if output:
        return Path(output)
    if params.get("output_dir"):
        return Path(str(params["output_dir"])) / f"{runbook.stem}.ipynb"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("out") / "runs" / f"{runbook.stem}-{stamp}.ipynb"


@click.command("run")
@click.argument("runbook")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A runbook parameter; VALUE is read as YAML (5, [5, 25], true, {DEMO_ERROR_RATE: '0.2'}).",
)
@click.option(
    "-o", "--output", help="Executed notebook path (default: <output_dir>/<runbook>.ipynb)."
)
@click.option("-k", "--kernel", default="python3", show_default=True, help="Kernel to run it with.")
@click.option(
    "--timeout", type=float, default=None, help="Per-cell timeout in seconds (default none)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(
    runbook: str,
    parameters: tuple[tuple[str, str], ...],
    output: str | None,
    kernel: str,
    timeout: float | None,
    quiet: bool,
) -> None:
    """Run RUNBOOK (a path or a name under runbooks/) with papermill."""
    path = find_runbook(runbook)
    params = {name: parse_value(value) for name, value in parameters}
    out = output_path(path, params, output)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = Path(str(params["output_dir"])) / "record" if params.get("output_dir") else None
    error = execute(path, out, params, kernel, timeout, record, quiet)
    click.echo(f"executed notebook: {out}")
    if error is not None:
        click.secho(f"runbook failed: {error}", fg="red", err=True)
        sys.exit(1)


def execute(
    path: Path,
    out: Path,
    params: dict[str, Any],
    kernel: str,
    timeout: float | None,
    record: Path | None,
    quiet: bool,
) -> str | None:
    """Run the notebook; return None on success or the failing cell's error line."""
    import papermill as pm

    failure: list[BaseException] = []

    def work() -> None:
        try:
            pm.execute_notebook(
                str(path),
                str(out),
                parameters=params,
                kernel_name=kernel,
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(Path.cwd()),
            )
        except BaseException as err:  # reported by the caller, whatever it is
            failure.append(err)

    thread = threading.Thread(target=work, name="papermill", daemon=True)
    thread.start()
    if quiet or record is None:
        thread.join()
    else:
        follow_steps(record, thread)
    if not failure:
        return None
    err = failure[0]
    if type(err).__name__ == "PapermillExecutionError":
        return f"{getattr(err, 'ename', '')}: {getattr(err, 'evalue', err)}"
    return f"{type(err).__name__}: {err}"


def follow_steps(record: Path, worker: threading.Thread) -> None:
    """Show one progress bar per rollout step while ``worker`` runs, from the record's events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    events = record / "events.jsonl"
    offset = events.stat().st_size if events.exists() else 0
    tasks: dict[int, Any] = {}
    holds: dict[int, tuple[float, float]] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    ) as progress:
        current = progress.add_task("starting", total=None, state="")
        while worker.is_alive() or offset < (events.stat().st_size if events.exists() else 0):
            if events.exists():
                with events.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                offset += len(complete)
                for line in complete.decode().splitlines():
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    _show(progress, current, tasks, holds, ev)
            for step, (t0, hold) in holds.items():
                progress.update(tasks[step], completed=min(hold, time.monotonic() - t0))
            worker.join(0.25)
        progress.remove_task(current)


def _show(
    progress: Any,
    current: Any,
    tasks: dict[int, Any],
    holds: dict[int, tuple[float, float]],
    ev: dict[str, Any],
) -> None:
    kind = ev.get("kind")
    if kind == "step":
        step = int(ev.get("step", 0))
        state = ev.get("state")
        if state == "started":
            hold = float(ev.get("hold_s") or 0) or 1e-9
            if step in tasks:
                progress.reset(tasks[step], total=hold)
            else:
                tasks[step] = progress.add_task(
                    f"step {step + 1}: {ev.get('weight')}%", total=hold, state="holding"
                )
            holds[step] = (time.monotonic(), hold)
        elif step in tasks:
            holds.pop(step, None)
            verdict = (ev.get("summary") or {}).get("verdict", state)
            task = progress.tasks[[t.id for t in progress.tasks].index(tasks[step])]
            progress.update(tasks[step], completed=task.total, state=f"{state} ({verdict})")
    elif kind in ("action", "run", "status"):
        progress.update(current, description=str(ev.get("message", ""))[:70])
