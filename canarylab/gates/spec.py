"""Gates written as data (a runbook parameter), and how the rollout's alpha is split.

This module must never do I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .comparison import ErrorRateComparison, LatencyComparison
from .metric import METRIC_GATES
from .share import TrafficShare
from .threshold import MaxErrorRate, MaxP99Latency
from .verdict import Gate

GATES: Mapping[str, type[Any]] = {
    "traffic_share": TrafficShare,
    "max_error_rate": MaxErrorRate,
    "max_p99_latency": MaxP99Latency,
    "error_rate_comparison": ErrorRateComparison,
    "latency_comparison": LatencyComparison,
    **METRIC_GATES,
}
"""Spec keys and the gate each builds."""


class GateSpecError(ValueError):
    """A gate written as data (a runbook parameter) could not be understood."""


def split_alpha(total: float, steps: int, gates: int) -> float:
    """The false-alarm level of each gate at each step, so the rollout keeps ``total``.

    Each gate is anytime-valid within a step: its false-alarm probability stays under
    its level however many times it is judged, hold extensions included. A false alarm
    of the rollout is a false alarm of at least one (step, gate) pair, so giving each of
    the ``steps × gates`` pairs ``total / (steps × gates)`` keeps the whole rollout at
    or below ``total`` (Bonferroni). Count every gate that can fail (all built-in gates
    can, the traffic-share gate included): ``len(from_spec(spec))``.
    """
    if not 0 < total < 1:
        raise GateSpecError(f"alpha must be between 0 and 1 (e.g. 0.01), got {total!r}")
    if steps < 1:
        raise GateSpecError(f"a rollout needs at least one step to split alpha over, got {steps}")
    return total / (steps * max(gates, 1))


WHOLE_RUN = frozenset({"error_rate_comparison", "latency_comparison", "metric_comparison"})
"""Gates whose evidence accumulates over the whole rollout (from ``Baseline.until``): one
e-process each for all steps, so they are charged once, not once per step."""

WHOLE_RUN_SHARE = 0.8
"""The part of the rollout's alpha that :func:`alpha_levels` gives the whole-run
(comparison) gates; the per-step gates share the rest. Per-step gates catch gross
failures (a hanging canary, no traffic, a rate far over its limit) where evidence
piles up fast and a smaller level costs a second at most; the comparisons must find
a 3x error rate in a few failures, where every unit of log(1/alpha) is seconds."""


def _present(spec: Mapping[str, Any]) -> list[str]:
    items = dict(spec)
    items.setdefault("traffic_share", True)
    return [k for k, v in items.items() if v is not False and v is not None]


def alpha_levels(total: float, specs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each gate's false-alarm level (by spec key), so the whole rollout keeps ``total``.

    ``specs`` is one gate spec per step. A false alarm of the rollout is a false alarm
    of at least one test; the levels of all tests add up to at most ``total``:

    - per-step gates (traffic share, thresholds) start a new test at every step, so each
      (step, gate) pair gets ``(1 − WHOLE_RUN_SHARE) · total / (steps × gates per step)``;
    - whole-run gates (the comparisons) run one e-process from ``Baseline.until`` over
      every step, and ever crossing ``1/alpha`` has probability ≤ ``alpha`` however many
      steps look at it: each gets ``WHOLE_RUN_SHARE · total / (whole-run gates)``, once.

    When only one kind is present it gets all of ``total``. The whole-run levels hold
    only when the window has a baseline with ``until`` (the runner measures one before
    the first step); without one the comparisons restart at each step, so use
    :func:`split_alpha` then. A gate that sets its own ``alpha`` in its spec keeps it
    (and is outside this budget).
    """
    if not specs:
        raise GateSpecError("a rollout needs at least one step to split alpha over")
    split_alpha(total, len(specs), 1)  # validates total
    for spec in specs:
        for key in _present(spec):
            if key not in GATES:
                raise GateSpecError(
                    f"unknown gate {key!r}; known gates are {', '.join(sorted(GATES))}"
                )
    whole = sorted({k for spec in specs for k in _present(spec) if k in WHOLE_RUN})
    per_step = max(len([k for k in _present(spec) if k not in WHOLE_RUN]) for spec in specs)
    share = WHOLE_RUN_SHARE if whole and per_step else (1.0 if whole else 0.0)
    levels: dict[str, float] = {}
    if per_step:
        step_level = (1 - share) * total / (len(specs) * per_step)
        levels.update({k: step_level for k in GATES if k not in WHOLE_RUN})
    if whole:
        levels.update({k: share * total / len(whole) for k in whole})
    return levels


def from_spec(
    spec: Mapping[str, Any], *, alpha: float | Mapping[str, float] | None = None
) -> list[Gate]:
    """Gates from plain data, the shape a runbook parameter takes.

    ``{"max_error_rate": 0.05, "error_rate_comparison": {"min_requests": 100}}``: a
    number (or, for a metric gate, a template name) is the gate's first field, a mapping gives its
    fields by name, ``True`` takes the defaults. The traffic-share gate is added unless
    the spec says ``"traffic_share": False``. ``alpha`` is the level of every gate
    whose spec does not set one: one number (from :func:`split_alpha`) for all, or a
    mapping from spec key to level (from :func:`alpha_levels`); an explicit ``alpha`` in
    a gate's spec is that gate's own share and is not checked against the rollout's
    total.
    """
    items = dict(spec)
    items.setdefault("traffic_share", True)
    ordered = [("traffic_share", items.pop("traffic_share")), *items.items()]
    gates: list[Gate] = []
    for key, value in ordered:
        cls = GATES.get(key)
        if cls is None:
            raise GateSpecError(f"unknown gate {key!r}; known gates are {', '.join(sorted(GATES))}")
        if value is False or value is None:
            continue
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(value, Mapping):
            kwargs = dict(value)
        elif value is True:
            kwargs = {}
        elif isinstance(value, int | float | str):
            kwargs = {names[0]: value}
        else:
            raise GateSpecError(
                f"gate {key!r}: give a number, true/false or a mapping of its fields, not {value!r}"
            )
        level = alpha.get(key) if isinstance(alpha, Mapping) else alpha
        if level is not None and "alpha" in names and "alpha" not in kwargs:
            kwargs["alpha"] = level
        try:
            gates.append(cls(**kwargs))
        except TypeError as err:
            raise GateSpecError(f"gate {key!r}: {err}; its fields are {', '.join(names)}") from None
    return gates
