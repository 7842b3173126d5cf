"""Static plotly figures for reports and the replay notebook.

Built from the tables of :mod:`canarylab.plots.frames`, so they are as cheap as
the decimated data they draw: a 24 h record becomes ~1,500 points per trace,
drawn with WebGL (``Scattergl``). The live chart in :mod:`canarylab.widgets`
reuses :func:`timeline_layout` so both look the same. Nothing here talks to a
cluster or reads files.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from canarylab.plots import frames

ROWS = ("traffic share %", "failures / s", "p99 ms", "weight %")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
FAILURE_COLOR = "#d62728"
MAX_ACTION_LINES = 40
"""Vertical lines for operator actions; beyond this only hover markers (10,000 lines kill a browser)."""


def version_color(version: str, versions: Sequence[str]) -> str:
    """A stable colour per version: the order they first appeared in."""
    if version == "unknown":
        return "#7f7f7f"
    known = [v for v in versions if v != "unknown"]
    return PALETTE[known.index(version) % len(PALETTE)] if version in known else PALETTE[-1]


def timeline_layout(title: str = "canary rollout") -> go.Figure:
    """The empty four-row timeline (share, failures, p99, weight) sharing one time axis."""
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.34, 0.2, 0.24, 0.22],
        subplot_titles=ROWS,
    )
    fig.update_layout(
        title=title,
        height=720,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.06},
        hovermode="x unified",
        uirevision="keep",
    )
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    fig.update_yaxes(range=[0, 105], row=4, col=1)
    return fig


@functools.lru_cache(maxsize=1)
def _base_layout() -> dict[str, Any]:
    return timeline_layout("").layout.to_plotly_json()


def timeline_spec(
    samples: pd.DataFrame,
    events: pd.DataFrame | None = None,
    max_points: int = frames.DEFAULT_MAX_POINTS,
    title: str = "canary rollout",
) -> dict[str, Any]:
    """The timeline as a plain plotly figure dict (``{"data": [...], "layout": {...}}``).

    Built as a dict and validated once by :func:`timeline`: plotly re-validates the
    whole figure on every ``add_trace``/``update_layout``, which on a loaded machine
    costs seconds for a figure with a slider and many annotations.
    """
    events = frames.empty_events() if events is None else events
    data = frames.traffic(samples, max_points=max_points)
    layout = copy.deepcopy(_base_layout())
    layout["title"] = {
        "text": title if data.bucket_s == 1 else f"{title} ({data.bucket_s}s buckets)"
    }
    layout["xaxis4"]["title"] = {"text": "UTC"}
    traces: list[dict[str, Any]] = []
    x = frames.naive_utc(data.time)
    for version in data.versions:
        color = version_color(version, data.versions)
        for row, values in enumerate((data.share, data.failures_per_s, data.p99_ms), start=1):
            traces.append(
                {
                    "type": "scattergl",
                    "x": x,
                    "y": values[version].to_numpy(dtype=float),
                    "mode": "lines",
                    "name": version,
                    "legendgroup": version,
                    "showlegend": row == 1,
                    "line": {"color": color},
                    **_axes(row),
                }
            )
    line = frames.weight_line(events, max_points=max_points)
    for name, values, dash, color in (
        ("desired weight", line.desired, "dash", "#444"),
        ("applied weight", line.applied, "solid", "#17becf"),
    ):
        traces.append(
            {
                "type": "scatter",
                "x": frames.naive_utc(line.time),
                "y": values,
                "name": name,
                "mode": "lines",
                "line": {"shape": "hv", "dash": dash, "color": color},
                **_axes(4),
            }
        )
    acted = frames.actions(events)
    if not acted.empty:
        traces.append(
            {
                "type": "scattergl",
                "x": frames.naive_utc(acted["time"]),
                "y": np.full(len(acted), 102.0),
                "mode": "markers",
                "name": "operator action",
                "marker": {"symbol": "triangle-down", "size": 9, "color": "#000"},
                "text": acted["message"].astype(str).to_numpy(),
                "hovertemplate": "%{text}<extra>action</extra>",
                **_axes(4),
            }
        )
        shapes, notes = action_marks(acted)
        layout["shapes"] = [*layout.get("shapes", []), *shapes]
        layout["annotations"] = [*layout.get("annotations", []), *notes]
    return {"data": traces, "layout": layout}


def timeline(
    samples: pd.DataFrame,
    events: pd.DataFrame | None = None,
    max_points: int = frames.DEFAULT_MAX_POINTS,
    title: str = "canary rollout",
) -> go.Figure:
    """Response share, failures, p99 by version and the weight step lines, actions marked."""
    return go.Figure(timeline_spec(samples, events, max_points, title))


def _axes(row: int) -> dict[str, str]:
    suffix = "" if row == 1 else str(row)
    return {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


def action_marks(acted: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dotted vertical lines and labels for the last :data:`MAX_ACTION_LINES` actions."""
    last = acted.iloc[-MAX_ACTION_LINES:]
    last_times = [str(t) for t in frames.naive_utc(last["time"])]
    shapes = [
        {
            "type": "line",
            "xref": "x4",
            "yref": "paper",
            "x0": at,
            "x1": at,
            "y0": 0,
            "y1": 1,
            "line": {"width": 1, "dash": "dot", "color": "#999"},
        }
        for at in last_times
    ]
    notes = [
        {
            "x": at,
            "xref": "x4",
            "y": 1.0,
            "yref": "paper",
            "text": str(message),
            "showarrow": False,
            "textangle": -90,
            "xanchor": "right",
            "yanchor": "top",
            "font": {"size": 9, "color": "#555"},
        }
        for at, message in zip(last_times, last["message"], strict=True)
    ]
    return shapes, notes


def step_bars(table: pd.DataFrame, title: str = "per step") -> go.Figure:
    """Requests by version per step, with the canary share against the step's weight."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if table.empty:
        fig.update_layout(title=f"{title}: no steps recorded")
        return fig
    labels = [f"{int(s)}: {w:g}%" for s, w in zip(table["step"], table["weight"], strict=True)]
    versions = [c[len("requests[") : -1] for c in table.columns if c.startswith("requests[")]
    for version in versions:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=table[f"requests[{version}]"],
                name=f"requests {version}",
                marker_color=version_color(version, versions),
            ),
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(x=labels, y=table["canary_share"], name="canary share %", mode="lines+markers"),
        secondary_y=True,
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=table["weight"],
            name="weight %",
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 24},
        ),
        secondary_y=True,
    )
    fig.update_layout(title=title, barmode="stack", height=380)
    fig.update_xaxes(title="step: weight")
    fig.update_yaxes(title="requests", secondary_y=False)
    fig.update_yaxes(title="%", range=[0, 105], secondary_y=True)
    return fig


def latency_distribution(
    samples: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    max_points: int = 20_000,
    title: str = "latency by version",
) -> go.Figure:
    """Latency distributions by version.

    From per-request results (``version``, ``latency_ms``) when there are any: a
    histogram per version. Otherwise from the per-second p50 and p99 columns, a
    box per version and percentile. Large inputs are sampled down to
    ``max_points`` per version with a fixed seed.
    """
    fig = go.Figure()
    if requests is not None and not requests.empty:
        versions = frames.first_seen(requests["version"])
        for version in versions:
            values = requests.loc[requests["version"].astype(str) == version, "latency_ms"].dropna()
            if len(values) > max_points:
                values = values.sample(max_points, random_state=0)
            fig.add_trace(
                go.Histogram(
                    x=values,
                    name=version,
                    opacity=0.6,
                    histnorm="probability density",
                    marker_color=version_color(version, versions),
                )
            )
        fig.update_layout(barmode="overlay", xaxis_title="latency ms")
    else:
        frames.check_samples(samples)
        versions = frames.first_seen(samples["version"])
        for version in versions:
            part = samples[samples["version"].astype(str) == version]
            if len(part) > max_points:
                part = part.sample(max_points, random_state=0)
            for column in ("p50_ms", "p99_ms"):
                fig.add_trace(
                    go.Box(
                        y=part[column],
                        name=f"{version} {column[:3]}",
                        marker_color=version_color(version, versions),
                        boxpoints=False,
                    )
                )
        fig.update_layout(yaxis_title="ms (per-second percentiles)")
    fig.update_layout(title=title, height=380)
    return fig
