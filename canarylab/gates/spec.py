"""Gates written as data (a runbook parameter), and how the rollout's alpha is split.

This module must never do I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .comparison import ErrorRateComparison, LatencyComparison
from .share import TrafficShare
from .threshold import MaxErrorRate, MaxP99Latency
from .verdict import Gate

GATES: Mapping[str, type[Any]] = {
    "traffic_share": TrafficShare,
    "max_error_rate": MaxErrorRate,
    "max_p99_latency": MaxP99Latency,
    "error_rate_comparison": ErrorRateComparison,
    "latency_comparison": LatencyComparison,
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


def from_spec(spec: Mapping[str, Any], *, alpha: float | None = None) -> list[Gate]:
    """Gates from plain data, the shape a runbook parameter takes.

    ``{"max_error_rate": 0.05, "error_rate_comparison": {"min_requests": 100}}``: a
    number is the gate's first field (limit, alpha or tolerance), a mapping gives its
    fields by name, ``True`` takes the defaults. The traffic-share gate is added unless
    the spec says ``"traffic_share": False``. ``alpha`` (from :func:`split_alpha`) is
    the level of every gate whose spec does not set one; an explicit ``alpha`` is that
    gate's own share and is not checked against the rollout's total.
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
        elif isinstance(value, int | float):
            kwargs = {names[0]: value}
        else:
            raise GateSpecError(
                f"gate {key!r}: give a number, true/false or a mapping of its fields, not {value!r}"
            )
        if alpha is not None and "alpha" in names and "alpha" not in kwargs:
            kwargs["alpha"] = alpha
        try:
            gates.append(cls(**kwargs))
        except TypeError as err:
            raise GateSpecError(f"gate {key!r}: {err}; its fields are {', '.join(names)}") from None
    return gates
