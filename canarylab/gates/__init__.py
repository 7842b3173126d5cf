"""Gates: pure, anytime-valid judgement of a canary step from the probe's traffic.

A gate looks at a window of traffic and returns a :class:`Verdict` — ``pass``,
``fail`` or ``insufficient`` (still collecting evidence) — always with the numbers it
judged on (counts, rates, e-values, bounds), so a failed rollout can say exactly why.
The runner judges every gate once a second; every test here keeps its false-alarm
level under that continuous monitoring (see ``evidence``), and :func:`alpha_levels`
(or the plain Bonferroni :func:`split_alpha`) shares the rollout's alpha among steps
and gates.

- :class:`TrafficShare` (on by default): the canary gets the share its weight says.
- :class:`MaxErrorRate`, :class:`MaxP99Latency`: the canary on its own against a limit,
  on confidence bounds.
- :class:`ErrorRateComparison`, :class:`LatencyComparison`: canary against original,
  with mixture sequential tests and a minimum effect.
- :class:`MetricComparison`, :class:`MetricThreshold` (``canarylab.gates.metric``): the
  gateway's own metrics from Prometheus (PromQL templates), by the same comparison test
  when a template gives counts, else against a threshold with a stated tolerance.

Failures without a version (timeouts, refused connections, gateway errors) are never
dropped: beyond what the :class:`Baseline` explains they are the canary's.

This package must never do I/O, read a clock or talk to a cluster: it takes
DataFrames in the schema of docs/architecture.md and returns frozen values.
"""

from __future__ import annotations

from .comparison import ErrorRateComparison, LatencyComparison
from .metric import MetricComparison, MetricThreshold
from .share import NO_CANARY_TRAFFIC, TrafficShare, route_took_effect
from .spec import (
    GATES,
    WHOLE_RUN,
    WHOLE_RUN_SHARE,
    GateSpecError,
    alpha_levels,
    from_spec,
    split_alpha,
)
from .threshold import MaxErrorRate, MaxP99Latency
from .verdict import (
    Gate,
    Numbers,
    Outcome,
    Verdict,
    _fmt,
    compares_original,
    first_failure,
    judge_all,
)
from .window import (
    ATTRIBUTION_SHARE,
    FAILURE_COLUMNS,
    Baseline,
    Side,
    Traffic,
    Window,
    side,
)

__all__ = [
    "ATTRIBUTION_SHARE",
    "FAILURE_COLUMNS",
    "GATES",
    "NO_CANARY_TRAFFIC",
    "WHOLE_RUN",
    "WHOLE_RUN_SHARE",
    "Baseline",
    "ErrorRateComparison",
    "Gate",
    "GateSpecError",
    "LatencyComparison",
    "MaxErrorRate",
    "MaxP99Latency",
    "MetricComparison",
    "MetricThreshold",
    "Numbers",
    "Outcome",
    "Side",
    "Traffic",
    "TrafficShare",
    "Verdict",
    "Window",
    "_fmt",
    "alpha_levels",
    "compares_original",
    "first_failure",
    "from_spec",
    "judge_all",
    "route_took_effect",
    "side",
    "split_alpha",
]
