"""``canarylab run RUNBOOK -p name value …``: papermill, with a progress bar per step.

The runbook runs exactly as plain ``papermill`` would run it (same parameters, the
kernel set explicitly to ``python3`` so a kernelspec name stored in a notebook cannot
break a run); this command adds output naming, a live progress bar per rollout step
(read from the record the runbook writes), signal forwarding and an exit code.

**Signals.** The kernel runs in a session of its own (jupyter_client starts it so), so
neither a terminal's Ctrl-C nor a ``kill`` of this process reaches it. While the
runbook runs, SIGINT and SIGTERM to ``canarylab run`` are forwarded to the kernel as
SIGINT, which raises ``KeyboardInterrupt`` in the running cell: the rollout rolls back
(reason ``Interrupted``) and the cell fails. Cells not yet started are not run. The
command then exits with the record's code. A second signal is forwarded too (it cuts
the rollback short: exit 3).

**Exit code** (:class:`canarylab.record.events.ExitCode`, docs/runbooks.md "Exit
codes"): the outcome *this* run wrote to its record (the last ``run`` event appended
during the run, else ``metadata.json`` when this run finished it), through
``ExitCode.for_outcome``. Without an outcome: 0 when the notebook finished (a dry run,
the abort runbook); when it failed, 3 if the run's record shows a change (a ``run`` or
``step`` event, an action other than ``unchanged``) or the runbook keeps no record we
can read, 1 if the record shows none (the kernel failed before the rollout began), 64
for a plan or gate error raised before anything changed. Bad ``-p`` names, a missing
runbook or kernel exit 64 too.

**Parameters** (``-f``, ``-p``, ``-r``, as papermill takes them) are checked against the
runbook's parameters cell before the kernel starts: ``canarylab.cli.parameters``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from canarylab.cli.codes import Command
from canarylab.cli.parameters import given_parameters, read_file, runbook_parameters
from canarylab.cli.paths import shipped

if TYPE_CHECKING:  # canarylab.record loads pandas: imported where used (cli/codes.py)
    from canarylab.record.events import ExitCode

RUNBOOK_DIRS = (Path("runbooks"), shipped("runbooks"))
"""Where a runbook name is looked up: ``./runbooks``, then the ones canarylab ships."""

USAGE_ERRORS = frozenset(
    {"PlanError", "GateSpecError", "SpecError", "PapermillMissingParameterException"}
)
"""Exception names (a cell's ``ename``) that mean bad input, when nothing changed."""

ENGINE = "canarylab"
"""The papermill engine ``canarylab run`` registers: nbclient, interruptible."""


def find_runbook(name: str) -> Path:
    """A path as given, else ``<dir>/<name>[.ipynb]`` for each of ``RUNBOOK_DIRS``."""
    candidates = [Path(name)]
    for folder in RUNBOOK_DIRS:
        candidates += [folder / name, folder / f"{name}.ipynb"]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted({p.stem for d in RUNBOOK_DIRS if d.is_dir() for p in d.glob("*.ipynb")})
    raise click.BadParameter(
        f"no runbook {name!r}" + (f"; known runbooks: {', '.join(known)}" if known else ""),
        param_hint="RUNBOOK",
    )


def output_path(runbook: Path, params: dict[str, Any], output: str | None) -> Path:
    if output:
        return Path(output)
    if params.get("output_dir"):
        return Path(str(params["output_dir"])) / f"{runbook.stem}.ipynb"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("out") / "runs" / f"{runbook.stem}-{stamp}.ipynb"


def record_dir(params: Mapping[str, Any], declared: Mapping[str, Any]) -> Path | None:
    """Where the runbook records: ``<output_dir>/record``, else ``record_dir`` (given or default)."""
    merged = {**declared, **params}
    if merged.get("output_dir"):
        return Path(str(merged["output_dir"])).absolute() / "record"
    if merged.get("record_dir"):
        return Path(str(merged["record_dir"])).absolute()
    return None


@click.command("run", cls=Command)
@click.argument("runbook")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A runbook parameter, checked against the parameters cell: text for a string "
    "parameter, else YAML (5, [5, 25], true, {DEMO_ERROR_RATE: '0.2'}).",
)
@click.option(
    "-r",
    "--parameter-raw",
    "raw_parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A string parameter, passed as the text given (as papermill's -r).",
)
@click.option(
    "-f",
    "--parameters-file",
    "parameters_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML mapping of parameters (as papermill's -f); -p and -r override it.",
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
    raw_parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    output: str | None,
    kernel: str,
    timeout: float | None,
    quiet: bool,
) -> None:
    """Run RUNBOOK (a path or a name under runbooks/) with papermill.

    SIGINT or SIGTERM interrupts the runbook's running cell (the rollout rolls back)
    and the command exits with the record's code.
    """
    from canarylab.record.events import ExitCode

    path = find_runbook(runbook)
    cell = runbook_parameters(path)
    file_values = read_file(parameters_file) if parameters_file else {}
    params = given_parameters(cell, file_values, parameters, raw_parameters)
    declared = {name: p.default for name, p in cell.items()}
    _check_kernel(kernel)
    out = output_path(path, params, output)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = record_dir(params, declared)
    mark = RecordMark.before(record)
    done = run_notebook(path, out, params, kernel, timeout, record, quiet)
    click.echo(f"executed notebook: {out}")
    code, why = exit_code(done, mark.seen())
    if done.error is not None:
        click.secho(f"runbook failed: {done.error}", fg="red", err=True)
    if code != ExitCode.OK or done.interrupted:
        click.secho(f"exit {int(code)} ({code.name}): {why}", err=True)
    sys.exit(int(code))


def _check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise click.BadParameter(f"no Jupyter kernel {kernel!r}", param_hint="-k") from None


# -- running the notebook ----------------------------------------------------------


@dataclass
class Execution:
    """How a notebook run went, as ``canarylab run`` saw it."""

    error: str | None = None
    """The failing cell's error line (``ename: evalue``), None when the notebook finished."""
    ename: str | None = None
    """The failing cell's exception name (or papermill's own, when no cell failed)."""
    cells_started: int = 0
    interrupted: int = 0
    """How many SIGINT/SIGTERM arrived while it ran."""


class Interrupts:
    """Forwards this process's SIGINT/SIGTERM to the notebook's kernel as SIGINT.

    The papermill engine below hands over its client (``attach``) and asks before each
    cell (``cell_may_start``); an interrupt stops the running cell and every later one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Any = None
        self.requested = 0
        self.cells_started = 0

    def attach(self, client: Any) -> None:
        with self._lock:
            self._client = client

    def kernel_pid(self) -> int | None:
        with self._lock:
            km = getattr(self._client, "km", None)
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        return pid if isinstance(pid, int) and pid > 0 else None

    def cell_may_start(self) -> bool:
        with self._lock:
            if self.requested:
                return False
            self.cells_started += 1
            return True

    def request(self, signum: int) -> None:
        """One signal arrived: forward it (when a kernel runs) and stop later cells."""
        with self._lock:
            self.requested += 1
            nth = self.requested
        pid = self.kernel_pid()
        name = signal.Signals(signum).name
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pid = None
        if nth == 1:
            where = f"interrupting the kernel (pid {pid})" if pid else "no kernel yet"
            click.secho(
                f"{name}: {where}; the runbook rolls back before it exits "
                "(a second signal cuts the rollback short)",
                fg="yellow",
                err=True,
            )
        else:
            click.secho(f"{name} again: interrupting the rollback", fg="red", err=True)


@contextmanager
def forwarding(interrupts: Interrupts) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM go to ``interrupts`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        interrupts.request(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _register_engine() -> None:
    from nbclient.exceptions import CellExecutionError
    from nbformat.v4 import new_output
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class Client(PapermillNotebookClient):  # type: ignore[misc]
        """papermill's client, which asks ``interrupts`` before each cell."""

        def __init__(self, nb_man: Any, interrupts: Interrupts, **kw: Any) -> None:
            super().__init__(nb_man, **kw)
            self.interrupts = interrupts
            interrupts.attach(self)

        def execute_cell(self, cell: Any, cell_index: int, *args: Any, **kw: Any) -> Any:
            if not self.interrupts.cell_may_start():
                text = "interrupted before this cell started (SIGINT/SIGTERM to canarylab run)"
                cell.outputs = [
                    new_output("error", ename="KeyboardInterrupt", evalue=text, traceback=[])
                ]
                raise CellExecutionError("", "KeyboardInterrupt", text)
            return super().execute_cell(cell, cell_index, *args, **kw)

    class Engine(NBClientEngine):  # type: ignore[misc]
        """nbclient as papermill runs it, with a client ``canarylab run`` can interrupt."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: float = 60,
            execution_timeout: float | None = None,
            interrupts: Interrupts | None = None,
            **kwargs: Any,
        ) -> Any:
            import logging

            kwargs.pop("input_path", None)
            return Client(
                nb_man,
                interrupts or Interrupts(),
                kernel_name=kernel_name,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            ).execute()

    papermill_engines.register(ENGINE, Engine)


def run_notebook(
    path: Path,
    out: Path,
    params: dict[str, Any],
    kernel: str,
    timeout: float | None,
    record: Path | None,
    quiet: bool,
) -> Execution:
    """Run the notebook with signals forwarded to its kernel; say how it went."""
    import papermill as pm

    _register_engine()
    interrupts = Interrupts()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            pm.execute_notebook(
                str(path),
                str(out),
                parameters=params,
                engine_name=ENGINE,
                kernel_name=kernel,
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(Path.cwd()),
                interrupts=interrupts,
            )
        except BaseException as err:  # reported by the caller, whatever it is
            failure.append(err)

    thread = threading.Thread(target=work, name="papermill", daemon=True)
    with forwarding(interrupts):
        thread.start()
        if quiet or record is None:
            while thread.is_alive():
                thread.join(0.25)
        else:
            follow_steps(record, thread)
    done = Execution(cells_started=interrupts.cells_started, interrupted=interrupts.requested)
    if failure:
        err = failure[0]
        if type(err).__name__ == "PapermillExecutionError":
            done.ename = str(getattr(err, "ename", "") or "")
            done.error = f"{done.ename}: {getattr(err, 'evalue', err)}"
        else:
            done.ename = type(err).__name__
            done.error = f"{done.ename}: {err}"
    return done


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
    return run_notebook(path, out, params, kernel, timeout, record, quiet).error


# -- the exit code from the record ------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What one run wrote to its record: the events it appended, its metadata if it finished it."""

    events: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    """``metadata.json`` when this run wrote ``finished_at``; else None."""


@dataclass(frozen=True)
class RecordMark:
    """Where a record stood before a run, so that only that run's writes count."""

    path: Path | None
    offset: int
    since: datetime

    @classmethod
    def before(cls, path: Path | None) -> RecordMark:
        events = None if path is None else path / "events.jsonl"
        offset = events.stat().st_size if events is not None and events.exists() else 0
        moment = datetime.now(UTC)  # to the millisecond, as the record's times are
        return cls(path, offset, moment.replace(microsecond=moment.microsecond // 1000 * 1000))

    def seen(self) -> Seen | None:
        """This run's writes (none when the record was never made); None: no record known."""
        if self.path is None:
            return None
        if not self.path.is_dir():
            return Seen()
        events: list[dict[str, Any]] = []
        file = self.path / "events.jsonl"
        if file.exists():
            with file.open("rb") as f:
                f.seek(self.offset)
                for line in f.read().decode("utf-8", "replace").splitlines():
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue  # a line a crash cut short
                    if isinstance(ev, dict):
                        events.append(ev)
        metadata = None
        try:
            meta = json.loads((self.path / "metadata.json").read_text())
            finished = datetime.fromisoformat(str(meta.get("finished_at")))
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            if finished >= self.since:
                metadata = meta
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return Seen(events, metadata)


def changed_something(events: list[dict[str, Any]]) -> bool:
    """Whether a run's events show that it may have changed the cluster."""
    from canarylab.record.events import Kind

    for ev in events:
        kind = ev.get("kind")
        if kind in (Kind.RUN, Kind.STEP):
            return True
        if kind == Kind.ACTION and ev.get("result") != "unchanged":
            return True
    return False


def exit_code(done: Execution, seen: Seen | None) -> tuple[ExitCode, str]:
    """The exit code of a ``canarylab run`` and why (module docstring)."""
    from canarylab.record.events import ExitCode, Kind, Outcome, RunState

    if seen is not None:
        finished = [
            ev
            for ev in seen.events
            if ev.get("kind") == Kind.RUN and ev.get("state") == RunState.FINISHED
        ]
        if finished:
            last = finished[-1]
            outcome = last.get("outcome")
            why = f"the run ended {outcome}" + (
                f" ({last['reason']})" if last.get("reason") else ""
            )
            return ExitCode.for_outcome(outcome), why
        if seen.metadata is not None and seen.metadata.get("outcome"):
            outcome = seen.metadata["outcome"]
            reason = seen.metadata.get("reason")
            if outcome == Outcome.FAILED and not changed_something(seen.events):
                return (
                    _before_anything(done),
                    f"the run failed ({reason}) before it changed anything",
                )
            return (
                ExitCode.for_outcome(outcome),
                f"the record says {outcome}" + (f" ({reason})" if reason else ""),
            )
    if done.error is None:
        return ExitCode.OK, "the runbook finished"
    if seen is None:
        if done.cells_started == 0:
            return _before_anything(done), "no cell ran"
        return ExitCode.UNSAFE, "the runbook failed and keeps no record to tell what it changed"
    if changed_something(seen.events):
        return (
            ExitCode.UNSAFE,
            "the runbook failed after it changed the cluster and recorded no outcome",
        )
    return _before_anything(done), "the runbook failed before the rollout began"


def _before_anything(done: Execution) -> ExitCode:
    from canarylab.record.events import ExitCode

    return ExitCode.USAGE if done.ename in USAGE_ERRORS else ExitCode.ERROR


# -- progress -----------------------------------------------------------------------


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
    from canarylab.record.events import Kind, StepState

    kind = ev.get("kind")
    if kind == Kind.STEP:
        step = int(ev.get("step", 0))
        state = ev.get("state")
        if state == StepState.STARTED:
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
    elif kind == Kind.EXTENSION:
        step = int(ev.get("step", 0))
        if step in holds:
            longest = float(ev.get("max_hold_s") or 0) or holds[step][1]
            holds[step] = (holds[step][0], longest)
            progress.update(tasks[step], total=longest, state="collecting")
    elif kind in (Kind.ACTION, Kind.RUN, Kind.STATUS):
        progress.update(current, description=str(ev.get("message", ""))[:70])
