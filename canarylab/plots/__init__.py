"""Figures of a canary rollout, for reports, the replay notebook and the live chart.

``frames`` turns probe samples and record events into small display tables (pure
pandas); ``figures`` draws them with plotly; ``report`` writes a self-contained
HTML file; ``synthetic`` makes seeded rollouts for benchmarks and tests. plotly is
imported here and in :mod:`canarylab.widgets` only; nothing in this package
changes a cluster.
"""

from __future__ import annotations

from canarylab.plots.figures import latency_distribution, step_bars, timeline
from canarylab.plots.frames import state_at, step_table, traffic, weight_line

__all__ = [
    "latency_distribution",
    "state_at",
    "step_bars",
    "step_table",
    "timeline",
    "traffic",
    "weight_line",
]
