"""``canarylab replay RECORD_DIR``: a recorded rollout as a postmortem report.

Prints the outcome and why first (which gate decided, on which numbers, at which
step), then the one per-step table (replayed from the recorded samples, with a note
where that differs from what the runbook judged), the gate verdicts and the hold
extensions, probe and lease problems; with ``--html`` writes the same, with the
timeline and the figures of the replay notebook, into one self-contained HTML file.
Reads the record only; never touches a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import pandas as pd

STEP_COLUMNS = ("step", "weight", "result", "held_s", "verdict", "canary_share", "judged", "note")
VERDICT_COLUMNS = ("step", "look", "gate", "state", "evidence", "statistic")


@click.command()
@click.argument("record_dir", type=click.Path(path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report (outcome, timeline, steps, verdicts, probe, lease).",
)
def replay(record_dir: Path, html_out: Path | None) -> None:
    """Replay the rollout recorded in RECORD_DIR (a record, or a run's output holding record/)."""
    from rich.console import Console
    from rich.markup import escape

    from canarylab.plots import replay as replays
    from canarylab.plots import report

    if not record_dir.exists():
        raise click.BadParameter(
            f"{record_dir} does not exist; pass a record directory (e.g. out/demo/record, "
            "written by `make demo` or a runbook)",
            param_hint="RECORD_DIR",
        )
    console = Console()
    r = replays.load(record_dir)
    totals = r.samples[["requests", "http_errors", "timeouts", "conn_errors"]].sum()
    failed = int(totals["http_errors"] + totals["timeouts"] + totals["conn_errors"])
    console.print(f"[bold]{escape(r.title)}[/] — record {escape(str(r.path))}")
    decision = r.decision()
    console.print(f"[bold]{escape(decision.headline)}[/]", soft_wrap=True)
    for line in decision.why:
        console.print(f"  {escape(line)}", soft_wrap=True)

    def show(frame: pd.DataFrame) -> None:
        text = report.display_table(frame).to_string(index=False)
        console.print(escape(text), soft_wrap=True)

    steps = r.step_table()
    if steps.empty:
        console.print("no plan steps recorded (a notebook session?); steps by weight change:")
        from canarylab.plots import step_table

        show(step_table(r.samples, r.events))
    else:
        show(steps[[c for c in steps.columns if c in STEP_COLUMNS or c.startswith("requests ")]])
    verdicts = r.verdicts()
    if not verdicts.empty:
        show(verdicts[list(VERDICT_COLUMNS)])
    judged = r.metric_queries()
    if not judged.empty:
        console.print("metric series the gates judged (from Prometheus):")
        show(judged)
    incidents = r.incidents()
    if not incidents.empty:
        show(incidents[["time", "kind", "state", "step", "message"]])
    if html_out is not None:
        out = report.write_html(r, html_out)
        console.print(f"report: {out}")
    console.print(f"requests: {int(totals['requests'])}, failed: {failed}")
