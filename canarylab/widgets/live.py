"""The live chart: a plotly ``FigureWidget`` fed by the probe in the background.

A :class:`LiveChart` owns a :class:`~canarylab.widgets.window.LiveWindow` and a
FigureWidget laid out like the static timeline (share, failures, p99 by version,
desired/applied weight), with each gate's running state in its title and, in
:attr:`LiveChart.gates_html`, its evidence so far and its bound or e-value.
:meth:`LiveChart.start` runs a feeder on a daemon thread with its own asyncio loop: it
drains the probe's async iterator into the window, reads the resource's weights, asks
the ``judge`` it was given for the gates' verdicts, and redraws once per ``interval``
inside ``batch_update``. The kernel's own loop is never used, so a cell can run while
the chart updates (ipykernel 7 has had reports of stalled background tasks).

This module must never change a cluster; it only reads through the callables it
is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from canarylab.plots import figures, frames
from canarylab.plots.verdicts import COLORS, gate_states, gates_html
from canarylab.probe.loop import run as run_loop
from canarylab.widgets.window import LiveWindow

if TYPE_CHECKING:
    from canarylab.gates import Verdict

SampleBatch: TypeAlias = pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]]
SampleSource: TypeAlias = Callable[[], AsyncIterator[SampleBatch]]
"""Makes the async iterator of sample batches (the probe's live iterator)."""
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WeightReader: TypeAlias = Callable[[], tuple[float | None, float | None]]
"""Returns (desired, applied) weight of the resource right now."""
GateJudge: TypeAlias = Callable[[], "Sequence[Verdict]"]
"""Returns the gates' verdicts on the traffic so far (called once per tick, off the loop)."""


@dataclass(frozen=True)
class TickCost:
    """How long one redraw took, for the benchmark and for a user wondering."""

    rows: int
    seconds: float


class LiveChart:
    """A bounded, self-updating original-vs-canary chart for a notebook."""

    def __init__(
        self,
        window_s: int = 300,
        interval: float = 1.0,
        title: str = "live traffic",
        view_interval: float = 1.0,
    ) -> None:
        self.window = LiveWindow(window_s)
        self.interval = interval
        self.title = title
        self.figure = go.FigureWidget(figures.timeline_layout(title))
        """The chart's state (traces by version, weights), as a plotly FigureWidget."""
        self.view = w.Output()
        """What a notebook shows: the figure re-rendered by JupyterLab's plotly renderer.

        Checked in Chromium: JupyterLab 4.6 with plotly 7.1's anywidget front end draws
        a displayed FigureWidget as empty axes, while the plotly mimetype renders; so the
        view mirrors :attr:`figure` as a mimetype bundle on every tick.
        """
        self.figure.update_xaxes(title=None)
        self.view_interval = view_interval
        """Seconds between re-renders of :attr:`view` (a browser redraws the whole plot)."""
        self._viewed = -math.inf
        self._versions: list[str] = []
        self._weight_traces = self._add_weight_traces()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.gates_html = w.HTML()
        """Each gate's running state: state, evidence so far, bound or e-value."""
        self.verdicts: tuple[Verdict, ...] = ()
        """The gates' latest verdicts (:meth:`show_gates`)."""
        self.errors: list[str] = []
        """Feeder errors (probe or weight reads), newest last, shown under the chart."""
        self.ticks = 0
        self.last_tick: TickCost | None = None

    # -- drawing ---------------------------------------------------------------------

    def _add_weight_traces(self) -> tuple[int, int]:
        start = len(self.figure.data)
        for name, dash, color in (
            ("desired weight", "dash", "#444"),
            ("applied weight", "solid", "#17becf"),
        ):
            self.figure.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    name=name,
                    mode="lines",
                    line={"shape": "hv", "dash": dash, "color": color},
                ),
                row=4,
                col=1,
            )
        return start, start + 1

    def _traces_for(self, version: str) -> tuple[int, int, int]:
        if version not in self._versions:
            self._versions.append(version)
            color = figures.version_color(version, self._versions)
            style = {
                "name": version,
                "legendgroup": version,
                "line": {"color": color},
                "mode": "lines",
            }
            self.figure.add_trace(go.Scatter(x=[], y=[], **style), row=1, col=1)
            self.figure.add_trace(go.Scatter(x=[], y=[], showlegend=False, **style), row=2, col=1)
            self.figure.add_trace(go.Scatter(x=[], y=[], showlegend=False, **style), row=3, col=1)
        first = len(self._weight_traces) + 3 * self._versions.index(version)
        return first, first + 1, first + 2

    def refresh(self) -> TickCost:
        """Redraw from the window: one ``batch_update``, so one message to the browser."""
        started = time.perf_counter()
        samples, weights = self.window.snapshot()
        data = frames.traffic(samples, max_points=self.window.window_s)
        for version in data.versions:
            self._traces_for(version)
        x = frames.naive_utc(data.time)
        with self.figure.batch_update():
            for version in self._versions:
                share_i, fail_i, p99_i = self._traces_for(version)
                present = version in data.share.columns
                self.figure.data[share_i].update(
                    x=x, y=data.share[version].to_numpy() if present else []
                )
                self.figure.data[fail_i].update(
                    x=x, y=data.failures_per_s[version].to_numpy() if present else []
                )
                self.figure.data[p99_i].update(
                    x=x, y=data.p99_ms[version].to_numpy() if present else []
                )
            if not weights.empty:
                wx = frames.naive_utc(weights["time"])
                self.figure.data[self._weight_traces[0]].update(
                    x=wx, y=weights["desired_weight"].to_numpy()
                )
                self.figure.data[self._weight_traces[1]].update(
                    x=wx, y=weights["applied_weight"].to_numpy()
                )
        if time.monotonic() - self._viewed >= self.view_interval:
            self._viewed = time.monotonic()
            self.view.outputs = (
                {
                    "output_type": "display_data",
                    "data": {PLOTLY_MIME: json.loads(pio.to_json(self.figure, validate=False))},
                    "metadata": {},
                },
            )
        self.ticks += 1
        self.last_tick = TickCost(len(samples), time.perf_counter() - started)
        return self.last_tick

    def show_gates(self, verdicts: Sequence[Verdict], heading: str = "gates") -> None:
        """Show the gates' running state: in the chart's title and in :attr:`gates_html`."""
        self.verdicts = tuple(verdicts)
        self.gates_html.value = gates_html(verdicts, heading)
        states = " · ".join(
            f'<span style="color:{COLORS.get(s.outcome, "#444")}">{s.gate} {s.state}</span>'
            for s in gate_states(verdicts)
        )
        self.figure.layout.title.text = f"{self.title} — {states}" if states else self.title

    def points(self, version: str) -> int:
        """How many points the share trace of ``version`` shows now (0 if none)."""
        if version not in self._versions:
            return 0
        x = self.figure.data[self._traces_for(version)[0]].x
        return 0 if x is None else len(x)

    @property
    def widget(self) -> w.Widget:
        """The chart and the gates' table under it: what a notebook shows."""
        return w.VBox([self.view, self.gates_html])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def versions(self) -> list[str]:
        return list(self._versions)

    # -- feeding ---------------------------------------------------------------------

    def start(
        self,
        source: SampleSource | None = None,
        weights: WeightReader | None = None,
        judge: GateJudge | None = None,
    ) -> None:
        """Feed from ``source``, ``weights`` and ``judge`` on a background thread until
        :meth:`stop`."""
        if self.running:
            raise RuntimeError("the live chart is already running; call stop() first")
        self._stop.clear()
        self._thread = threading.Thread(
            target=lambda: run_loop(self._feed(source, weights, judge)),
            name="canarylab-live-chart",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the feeder and wait for its thread (the figure keeps what it shows)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _error(self, what: str, err: BaseException) -> None:
        self.errors.append(f"{what}: {type(err).__name__}: {err}")
        del self.errors[:-20]

    async def _feed(
        self,
        source: SampleSource | None,
        weights: WeightReader | None,
        judge: GateJudge | None = None,
    ) -> None:
        drain: asyncio.Task[None] | None = None
        if source is not None:
            drain = asyncio.create_task(self._drain(source))
        try:
            while not self._stop.is_set():
                if weights is not None:
                    try:
                        desired, applied = await asyncio.to_thread(weights)
                        self.window.push_weight(pd.Timestamp.now(tz="UTC"), desired, applied)
                    except Exception as err:
                        self._error("weight", err)
                if judge is not None:
                    try:
                        self.show_gates(await asyncio.to_thread(judge))
                    except Exception as err:
                        self._error("gates", err)
                try:
                    self.refresh()
                except Exception as err:
                    self._error("redraw", err)
                await asyncio.sleep(self.interval)
        finally:
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await drain

    async def _drain(self, source: SampleSource) -> None:
        try:
            async for batch in source():
                self.window.push_samples(batch)
                if self._stop.is_set():
                    break
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._error("probe", err)
