"""The postmortem report: one self-contained HTML file from a record.

It leads with the outcome and why (which gate decided, on which numbers, at which
step), then the timeline with operator actions and a time slider that scrubs through
the rollout (a plotly slider, so it works without a kernel), then one per-step table
(counts replayed from the samples, with a note where they differ from what the runbook
judged), every gate verdict, the hold extensions, baseline, probe and lease events, the
per-step bars and latency distributions, and last the run's metadata with its
parameters as YAML. plotly.js is inlined once, so the file opens offline. This module
writes only the file it is asked to.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import yaml

from canarylab.plots import figures, frames
from canarylab.plots.replay import Decision, Replay
from canarylab.plots.verdicts import fmt, gates_at
from canarylab.record.events import Outcome

SCRUB_STEPS = 120
"""Positions of the report's time slider; each carries its state, so keep it modest."""


def describe_state(state: dict[str, object]) -> str:
    """One line of what a replay shows at a second (for the slider and the notebook)."""

    def pct(value: object) -> str:
        return "–" if not isinstance(value, float) or math.isnan(value) else f"{value:g}%"

    share = state.get("share") or {}
    assert isinstance(share, dict)
    traffic = ", ".join(f"{v} {s:.1f}%" for v, s in share.items()) or "no traffic"
    at = pd.Timestamp(str(state["time"])).strftime("%H:%M:%S")
    gates = f" · gates {state['gates']}" if state.get("gates") else ""
    return (
        f"{at} UTC · phase {state.get('phase') or '–'} · weight desired "
        f"{pct(state.get('desired_weight'))}, applied {pct(state.get('applied_weight'))} · "
        f"traffic {traffic} · {state.get('failures', 0)} failed of {state.get('requests', 0)} "
        f"(last 10 s) · last action: {state.get('last_action') or '–'}{gates}"
    )


def scrub_times(samples: pd.DataFrame, events: pd.DataFrame, positions: int) -> list[pd.Timestamp]:
    """Evenly spaced seconds over the whole record, at most ``positions`` of them."""
    times = [pd.to_datetime(samples["second"], utc=True), pd.to_datetime(events["time"], utc=True)]
    present = [t for t in times if len(t)]
    if not present:
        return []
    lo = min(t.min() for t in present)
    hi = max(t.max() for t in present)
    span = max(1, int((hi - lo).total_seconds()))
    step = max(1, math.ceil(span / max(1, positions - 1)))
    return [lo + pd.Timedelta(seconds=s) for s in range(0, span + 1, step)]


def add_scrubber(
    spec: dict[str, Any],
    samples: pd.DataFrame,
    events: pd.DataFrame,
    positions: int = SCRUB_STEPS,
    verdicts: pd.DataFrame | None = None,
) -> None:
    """Add to a timeline spec a slider moving a cursor line and a caption with the state
    there (with the gates' states then, given ``verdicts`` of ``Replay.verdicts()``)."""
    times = scrub_times(samples, events, positions)
    if not times:
        return
    states = frames.states_at(samples, events, times)
    if verdicts is not None:
        for state, gates in zip(states, gates_at(verdicts, times), strict=True):
            state["gates"] = gates
    xs = [str(x) for x in frames.naive_utc(pd.Series(times))]
    layout = spec["layout"]
    shapes = layout.setdefault("shapes", [])
    annotations = layout.setdefault("annotations", [])
    cursor, caption = len(shapes), len(annotations)
    shapes.append(
        {
            "type": "line",
            "xref": "x4",
            "yref": "paper",
            "x0": xs[0],
            "x1": xs[0],
            "y0": 0,
            "y1": 1,
            "line": {"width": 2, "color": "#d62728"},
        }
    )
    annotations.append(
        {
            "text": describe_state(states[0]),
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": 1.07,
            "showarrow": False,
            "xanchor": "left",
            "font": {"size": 11},
        }
    )
    layout["sliders"] = [
        {
            "active": 0,
            "pad": {"t": 50},
            "currentvalue": {"visible": False},
            "steps": [
                {
                    "method": "relayout",
                    "label": at.strftime("%H:%M:%S"),
                    "args": [
                        {
                            f"shapes[{cursor}].x0": x,
                            f"shapes[{cursor}].x1": x,
                            f"annotations[{caption}].text": describe_state(state),
                        }
                    ],
                }
                for at, x, state in zip(times, xs, states, strict=True)
            ],
        }
    ]
    layout["height"] = 840
    layout["margin"] = {**layout.get("margin", {}), "t": 110, "b": 120}


OUTCOME_COLORS: dict[str, str] = {
    Outcome.SUCCEEDED: "#2ca02c",
    Outcome.ROLLED_BACK: "#d62728",
    Outcome.FAILED: "#7b0000",
}
VERDICT_COLUMNS = ["t", "step", "look", "gate", "state", "evidence", "statistic", "reason"]
"""The verdict table's columns in the report (the raw numbers stay in the notebook)."""


def _clock(value: object) -> object:
    if isinstance(value, pd.Timestamp) and not pd.isna(value):
        return value.tz_convert("UTC").strftime("%H:%M:%S.%f")[:-3]
    return value


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A table for people: times as ``HH:MM:SS.mmm`` UTC, numbers to 4 digits, ``–``
    where a value is missing (never ``nan``), whole numbers without a decimal point."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_datetime64_any_dtype(values) or (
            values.dtype == object and any(isinstance(v, pd.Timestamp) for v in values)
        ):
            out[column] = values.map(_clock).where(values.notna(), "–")
        elif pd.api.types.is_float_dtype(values):
            whole = values.dropna().map(float.is_integer).all()
            out[column] = ["–" if pd.isna(v) else f"{int(v)}" if whole else fmt(v) for v in values]
        elif values.isna().any():
            out[column] = values.astype(object).where(values.notna(), "–")
    return out


def _table(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return f"<h3>{html.escape(caption)}</h3><p>none recorded</p>"
    return f"<h3>{html.escape(caption)}</h3>" + display_table(frame).to_html(
        index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0
    )


def plain(value: Any) -> Any:
    """Metadata as plain data for YAML: NaN and infinities become null, tuples lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_yaml(value: Any) -> str:
    """A mapping or list as block YAML, keys in the order they were written."""
    text: str = yaml.safe_dump(
        plain(value), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return text.strip()


def outcome_html(decision: Decision) -> str:
    """The report's lead: the outcome, the deciding step and gate, and their numbers."""
    color = OUTCOME_COLORS.get(str(decision.outcome), "#444")
    when = _clock(decision.at) if decision.at is not None else None
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in decision.why)
    return (
        f'<div style="border-left:6px solid {color};padding:4px 12px;margin:1em 0">'
        f'<p style="font-size:1.3em;color:{color};margin:0"><b>'
        f"{html.escape(decision.headline)}</b></p>"
        + (f"<p style='margin:2px 0'>decided at {html.escape(str(when))} UTC</p>" if when else "")
        + (f"<ul style='margin:4px 0'>{lines}</ul>" if lines else "")
        + "</div>"
    )


def header_html(replay: Replay) -> str:
    """What, where, when (no empty or NaN values) and the parameters as YAML."""
    rows = []
    params = None
    for key, value in replay.metadata.items():
        if key == "runs":
            continue
        if key == "parameters":
            params = value
            continue
        value = plain(value)
        if value is None or value == "" or value == {}:
            continue
        shown = (
            f"<pre style='margin:0;text-align:left'>{html.escape(as_yaml(value))}</pre>"
            if isinstance(value, dict | list)
            else html.escape(str(value))
        )
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{shown}</td></tr>")
    out = f"<table class='meta'>{''.join(rows)}</table>"
    if params:
        out += (
            "<details open><summary><b>parameters</b></summary>"
            f"<pre>{html.escape(as_yaml(params))}</pre></details>"
        )
    return out


def _flag_problems(incidents: pd.DataFrame) -> pd.DataFrame:
    out = incidents.copy()
    out["problem"] = ["⚠ yes" if bool(p) else "" for p in out["problem"]]
    return out


def sections(replay: Replay) -> list[tuple[str, go.Figure | dict[str, Any] | pd.DataFrame]]:
    """The report's parts after its lead, in order: (caption, figure, figure dict or table).

    The timeline stays a dict: it is written without a second validation pass.
    """
    spec = figures.timeline_spec(replay.samples, replay.events, title=replay.title)
    verdicts = replay.verdicts()
    add_scrubber(spec, replay.samples, replay.events, verdicts=verdicts)
    steps = replay.step_table()
    caption = "per step (counts replayed from the samples; note: where they differ from the judged)"
    if steps.empty:  # a record without plan steps (a notebook session): steps by weight
        steps = frames.step_table(replay.samples, replay.events)
        caption = "per step (no plan steps recorded: steps by weight change)"
    bars = figures.step_bars(frames.step_table(replay.samples, replay.events))
    acted = frames.actions(replay.events)[["time", "message"]]
    return [
        ("timeline", spec),
        (caption, steps),
        (
            "every gate verdict (each change of a gate's state, and each step's last look)",
            verdicts[[c for c in VERDICT_COLUMNS if c in verdicts]],
        ),
        ("hold extensions, baseline, probe and lease", _flag_problems(replay.incidents())),
        ("per-step traffic", bars),
        (
            "latency by version",
            figures.latency_distribution(
                replay.samples, replay.requests if len(replay.requests) else None
            ),
        ),
        ("operator actions", acted),
    ]


def write_html(
    replay: Replay, out: str | Path, parts: Sequence[tuple[str, object]] | None = None
) -> Path:
    """Write the self-contained report for ``replay`` to ``out``; returns the path."""
    out = Path(out)
    body: list[str] = []
    inlined = False
    for caption, part in parts if parts is not None else sections(replay):
        if isinstance(part, go.Figure | dict):
            body.append(f"<h2>{html.escape(caption)}</h2>")
            body.append(
                pio.to_html(part, full_html=False, include_plotlyjs=not inlined, validate=False)
            )
            inlined = True
        elif isinstance(part, pd.DataFrame):
            body.append(_table(part, caption))
    totals = replay.samples[["requests", *frames.FAILURE_COLUMNS]].sum()
    failed = int(sum(totals[c] for c in frames.FAILURE_COLUMNS))
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(replay.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}
table.meta th,table.meta td{{text-align:left}}</style></head>
<body><h1>Rollout replay: {html.escape(replay.title)}</h1>
{outcome_html(replay.decision())}
<p>record {html.escape(str(replay.path))} · requests: {int(totals["requests"])}, failed: {failed}</p>
{"".join(body)}
<h2>run</h2>
{header_html(replay)}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out
