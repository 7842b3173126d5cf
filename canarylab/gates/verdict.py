"""Verdicts and the gate protocol: what a gate returns and how a step reads them.

This module must never compute statistics or do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .window import Traffic, Window

Outcome = Literal["pass", "fail", "insufficient"]
Numbers = Mapping[str, float | int | str | None]


@dataclass(frozen=True)
class Verdict:
    """What one gate decided about one window of traffic, with its numbers.

    ``insufficient`` means "still collecting evidence": the runner keeps holding (up to
    the step's ``max_hold``) and then fails closed.
    """

    gate: str
    """The gate's name, e.g. ``error-rate-comparison``."""
    outcome: Outcome
    reason: str
    """One sentence a human reads: what was measured against what."""
    numbers: Numbers = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome == "fail"

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in self.numbers.items())
        return f"gate {self.gate}: {self.outcome} — {self.reason} ({shown})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "outcome": self.outcome,
            "reason": self.reason,
            "numbers": dict(self.numbers),
        }


class Gate(Protocol):
    """Anything that judges a window of traffic (statelessly: the window is all it sees)."""

    @property
    def name(self) -> str: ...

    def judge(self, traffic: Traffic, window: Window) -> Verdict: ...


def judge_all(gates: Sequence[Gate], traffic: Traffic, window: Window) -> list[Verdict]:
    """Every gate's verdict on the same window."""
    return [g.judge(traffic, window) for g in gates]


def compares_original(gate: Gate) -> bool:
    """True for gates that judge canary against original (meaningless at weight 100)."""
    return bool(getattr(gate, "compares_original", False))


def first_failure(verdicts: Sequence[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.failed), None)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)
