"""The postmortem report: one self-contained HTML file from a record.

The same figures and tables the replay notebook shows: the timeline with operator
actions, a time slider that scrubs through the rollout (a plotly slider, so it
works without a kernel), the per-step table (replayed and as recorded), the gate
verdicts, the per-step bars and latency distributions. plotly.js is inlined
once, so the file opens offline. This module writes only the file it is asked to.
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

from canarylab.plots import figures, frames
from canarylab.plots.replay import Replay

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
    return (
        f"{at} UTC · phase {state.get('phase') or '–'} · weight desired "
        f"{pct(state.get('desired_weight'))}, applied {pct(state.get('applied_weight'))} · "
        f"traffic {traffic} · {state.get('failures', 0)} failed of {state.get('requests', 0)} "
        f"(last 10 s) · last action: {state.get('last_action') or '–'}"
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
) -> None:
    """Add to a timeline spec a slider moving a cursor line and a caption with the state there."""
    times = scrub_times(samples, events, positions)
    if not times:
        return
    states = frames.states_at(samples, events, times)
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


def _table(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return f"<h3>{html.escape(caption)}</h3><p>none recorded</p>"
    return f"<h3>{html.escape(caption)}</h3>" + frame.to_html(
        index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0
    )


def sections(replay: Replay) -> list[tuple[str, go.Figure | dict[str, Any] | pd.DataFrame]]:
    """The report's parts in order: (caption, figure, figure dict or table).

    The timeline stays a dict: it is written without a second validation pass.
    """
    spec = figures.timeline_spec(replay.samples, replay.events, title=replay.title)
    add_scrubber(spec, replay.samples, replay.events)
    steps = replay.replayed_steps()
    if steps.empty:  # a record without plan steps (a notebook session): steps by weight
        steps = frames.step_table(replay.samples, replay.events)
    bars = figures.step_bars(frames.step_table(replay.samples, replay.events))
    acted = frames.actions(replay.events)[["time", "message"]]
    return [
        ("timeline", spec),
        ("per-step table (replayed from the samples)", steps),
        ("per-step table (as the runbook printed it)", replay.recorded_steps()),
        ("gate verdicts", replay.verdicts()),
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
    meta = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in replay.metadata.items()
        if k != "runs"
    )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(replay.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style></head>
<body><h1>Rollout replay: {html.escape(replay.title)}</h1>
<p>record {html.escape(str(replay.path))} · requests: {int(totals["requests"])}, failed: {failed}</p>
<table>{meta}</table>
{"".join(body)}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out
