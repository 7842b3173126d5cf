"""The replay notebook's time slider: scrub through a recorded rollout.

A :class:`ReplayExplorer` shows the recorded timeline as a ``FigureWidget`` with a
cursor line, and an ipywidgets slider over the record's seconds; moving it moves
the cursor and shows the state at that second (phase, desired and applied weight,
the traffic share of the last seconds, the last operator action, the gates' states
then). The states are computed once, vectorised
(:func:`canarylab.plots.frames.states_at`), so scrubbing costs a relayout, not a query.
Reads a loaded record only.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from canarylab.plots import figures, frames
from canarylab.plots.replay import Replay
from canarylab.plots.report import describe_state, scrub_times
from canarylab.plots.verdicts import gates_at

POSITIONS = 600
"""Slider positions at most (one per second for records up to 10 minutes)."""


class ReplayExplorer:
    """Timeline + time slider + state caption for one :class:`Replay`."""

    def __init__(self, replay: Replay, window_s: int = 10, positions: int = POSITIONS) -> None:
        self.replay = replay
        self.times = scrub_times(replay.samples, replay.events, positions)
        self.states = frames.states_at(replay.samples, replay.events, self.times, window_s)
        for state, gates in zip(self.states, gates_at(replay.verdicts(), self.times), strict=True):
            state["gates"] = gates
        spec = figures.timeline_spec(replay.samples, replay.events, title=replay.title)
        layout: dict[str, Any] = spec["layout"]
        shapes = layout.setdefault("shapes", [])
        self._cursor = len(shapes)
        first = self._x(0) if self.times else None
        shapes.append(
            {
                "type": "line",
                "xref": "x4",
                "yref": "paper",
                "x0": first,
                "x1": first,
                "y0": 0,
                "y1": 1,
                "line": {"width": 2, "color": "#d62728"},
                "visible": bool(self.times),
            }
        )
        self.figure = go.FigureWidget(spec)
        self.caption = w.HTML()
        self.slider = w.IntSlider(
            value=0,
            min=0,
            max=max(0, len(self.times) - 1),
            description="time",
            continuous_update=True,
            readout=False,
            layout=w.Layout(width="90%"),
            disabled=not self.times,
        )
        self.slider.observe(lambda change: self.show(int(change["new"])), names="value")
        self.widget = w.VBox([self.slider, self.caption, self.figure])
        self.show(0)

    def _x(self, i: int) -> str:
        return str(frames.naive_utc(pd.Series([self.times[i]]))[0])

    def show(self, i: int) -> dict[str, object] | None:
        """Move the cursor to position ``i`` and caption it; returns the state shown."""
        if not self.times:
            self.caption.value = "nothing recorded"
            return None
        i = max(0, min(i, len(self.times) - 1))
        x = self._x(i)
        with self.figure.batch_update():
            self.figure.layout.shapes[self._cursor].update(x0=x, x1=x)
        self.caption.value = html.escape(describe_state(self.states[i]))
        return self.states[i]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
