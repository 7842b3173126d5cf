"""``canarylab replay RECORD_DIR``: a recorded rollout as a postmortem report.

Prints the per-step table (replayed from the recorded samples, as the runbook
printed it live) and the gate verdicts, and with ``--html`` writes the same
figures and tables as the replay notebook into one self-contained HTML file.
Reads the record only; never touches a cluster.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("record_dir", type=click.Path(path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report (timeline, time slider, step table, verdicts).",
)
def replay(record_dir: Path, html_out: Path | None) -> None:
    """Replay the rollout recorded in RECORD_DIR (a record, or a run's output holding record/)."""
    from rich.console import Console

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
    console.print(f"[bold]{r.title}[/] — record {r.path}")
    steps = r.replayed_steps()
    if steps.empty:
        console.print("no plan steps recorded (a notebook session?); steps by weight change:")
        from canarylab.plots import step_table

        steps = step_table(r.samples, r.events)
    console.print(steps.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    verdicts = r.verdicts()
    if not verdicts.empty:
        console.print(
            verdicts[["step", "gate", "outcome", "p_value", "reason"]].to_string(index=False)
        )
    if html_out is not None:
        out = report.write_html(r, html_out)
        console.print(f"report: {out}")
    console.print(f"requests: {int(totals['requests'])}, failed: {failed}")
