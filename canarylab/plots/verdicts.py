"""A gate's verdict in words a person scans: state, evidence so far, the bound or e-value.

The step-through panel, the live chart, the replay notebook and the postmortem report
all show gates through :func:`gate_state`, so a gate reads the same live and in a
postmortem. It takes a verdict as the gates return it (``canarylab.gates.Verdict``) or
as a record keeps it (``gate``, ``outcome``, ``reason``, ``numbers``; NaN written as
``null``), and knows the numbers the built-in gates report; unknown numbers are shown
as they are.

Pure formatting: this module must never judge traffic, draw, or do I/O.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

STATES = {"pass": "passes", "fail": "fails", "insufficient": "collecting"}
"""What a verdict's outcome is called on screen."""
COLORS = {"pass": "#2ca02c", "fail": "#d62728", "insufficient": "#b8860b"}
ORDER = {"fail": 0, "insufficient": 1, "pass": 2}


@dataclass(frozen=True)
class GateState:
    """One gate's running state, as shown to a person."""

    gate: str
    outcome: str
    """``pass``, ``fail`` or ``insufficient`` (as the gate said)."""
    evidence: str
    """The counts so far, e.g. ``canary 3/412 failed · original 5/1,630``."""
    statistic: str
    """The bound or e-value against what it is compared with."""
    reason: str

    @property
    def state(self) -> str:
        """``passes``, ``fails`` or ``collecting``."""
        return STATES.get(self.outcome, self.outcome or "–")


def number(value: Any) -> float | None:
    """A finite float, or None for missing, null, NaN and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return None if math.isnan(v) else v


def fmt(value: Any, kind: str = "g") -> str:
    """A number for display: ``–`` for missing or NaN, ``∞`` for infinity, never ``nan``.

    ``kind``: ``g`` (4 significant digits), ``int`` (thousands separated), ``pct`` (a
    proportion as percent) or ``ms``.
    """
    v = number(value)
    if v is None:
        return "–" if value is None or isinstance(value, float) else str(value)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return f"{v:.2%}" if v == 0 or abs(v) >= 0.001 else f"{v:.3%}"
    if kind == "ms":
        return f"{v:.3g} ms"
    return f"{v:.4g}"


def _fields(verdict: Any) -> tuple[str, str, str, Mapping[str, Any]]:
    if isinstance(verdict, Mapping):
        get = verdict.get
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(verdict, name, default)

    numbers = get("numbers")
    return (
        str(get("gate") or "?"),
        str(get("outcome") or ""),
        "" if get("reason") is None else str(get("reason")),
        numbers if isinstance(numbers, Mapping) else {},
    )


def evidence(numbers: Mapping[str, Any]) -> str:
    """The counts a gate judged on, in one short phrase."""
    n = numbers
    parts: list[str] = []
    if "requests" in n and "weight" in n:  # traffic share
        parts.append(
            f"canary {fmt(n.get('canary_requests'), 'int')} of {fmt(n.get('requests'), 'int')} "
            f"requests ({fmt(n.get('canary_share'), 'pct')}) at weight {fmt(n.get('weight'))}%"
        )
    elif "canary_failures" in n:
        parts.append(
            f"canary {fmt(n.get('canary_failures'), 'int')}/"
            f"{fmt(n.get('canary_requests'), 'int')} failed"
        )
        if number(n.get("attributed_failures")):
            parts[-1] += f" ({fmt(n.get('attributed_failures'), 'int')} without a version)"
        if "original_failures" in n:
            parts.append(
                f"original {fmt(n.get('original_failures'), 'int')}/"
                f"{fmt(n.get('original_requests'), 'int')}"
            )
    elif "slow_responses" in n:
        parts.append(
            f"{fmt(n.get('slow_responses'), 'int')} of {fmt(n.get('canary_responses'), 'int')} "
            f"canary responses slower than {fmt(n.get('limit_ms'), 'ms')}"
        )
    elif "canary_responses" in n:
        parts.append(
            f"canary {fmt(n.get('canary_responses'), 'int')} responses, median "
            f"{fmt(n.get('canary_median_ms'), 'ms')}"
        )
        parts.append(
            f"original {fmt(n.get('original_responses'), 'int')}, "
            f"{fmt(n.get('original_median_ms'), 'ms')}"
        )
    return " · ".join(parts) or "no evidence yet"


def statistic(numbers: Mapping[str, Any]) -> str:
    """The bound or e-value, and what it is compared with."""
    n = numbers
    parts: list[str] = []
    limit = next((k for k in ("limit", "allowed_fraction", "expected_at_least") if k in n), None)
    if "lower_bound" in n and "upper_bound" in n:
        against = f" vs {fmt(n.get(limit), 'pct')}" if limit else ""
        parts.append(
            f"bounds {fmt(n.get('lower_bound'), 'pct')}–{fmt(n.get('upper_bound'), 'pct')}{against}"
        )
    if "e_value" in n:
        parts.append(f"e-value {fmt(n.get('e_value'))} (fails at {fmt(n.get('threshold'))})")
    if "pass_e_value" in n and "pass_threshold" in n:
        parts.append(f"pass e-value {fmt(n.get('pass_e_value'))} of {fmt(n.get('pass_threshold'))}")
    elif "p_value" in n and "e_value" not in n:
        parts.append(f"p {fmt(n.get('p_value'))} (alpha {fmt(n.get('alpha'))})")
    if "min_difference" in n:
        parts.append(f"min difference {fmt(n.get('min_difference'), 'pct')}")
    if "max_ratio" in n:
        parts.append(f"max ratio ×{fmt(n.get('max_ratio'))}")
    return " · ".join(parts) or "–"


_NAN = re.compile(r"\bnan\b(%| ms)?", re.IGNORECASE)


def readable(reason: str) -> str:
    """A gate's sentence without ``nan`` (a rate or median of no requests reads ``–``)."""
    return _NAN.sub("n/a", reason)


def gate_state(verdict: Any) -> GateState:
    """A :class:`GateState` of a ``Verdict`` or of a recorded verdict (a mapping)."""
    gate, outcome, reason, numbers = _fields(verdict)
    return GateState(gate, outcome, evidence(numbers), statistic(numbers), readable(reason))


def gate_states(verdicts: Iterable[Any]) -> list[GateState]:
    """States of many verdicts, failing first, then collecting, then passing."""
    states = [gate_state(v) for v in verdicts]
    return sorted(states, key=lambda s: ORDER.get(s.outcome, 3))


def gate_table(verdicts: Iterable[Any]) -> pd.DataFrame:
    """``gate``, ``state``, ``evidence``, ``statistic``, ``reason``: one row a gate."""
    rows = [
        {
            "gate": s.gate,
            "state": s.state,
            "evidence": s.evidence,
            "statistic": s.statistic,
            "reason": s.reason,
        }
        for s in gate_states(verdicts)
    ]
    return pd.DataFrame(rows, columns=["gate", "state", "evidence", "statistic", "reason"])


def gates_html(verdicts: Sequence[Any], heading: str = "gates") -> str:
    """A small HTML table of the gates' running state (for the panel and the live chart)."""
    if not verdicts:
        return f"<b>{html.escape(heading)}</b>: none judged yet"
    cells = []
    for s in gate_states(verdicts):
        color = COLORS.get(s.outcome, "#444")
        cells.append(
            "<tr>"
            f'<td style="padding:1px 6px"><b>{html.escape(s.gate)}</b></td>'
            f'<td style="padding:1px 6px;color:{color}"><b>{html.escape(s.state)}</b></td>'
            f'<td style="padding:1px 6px">{html.escape(s.evidence)}</td>'
            f'<td style="padding:1px 6px">{html.escape(s.statistic)}</td>'
            "</tr>"
        )
    return (
        f"<b>{html.escape(heading)}</b>"
        '<table style="font-size:12px;border-collapse:collapse">' + "".join(cells) + "</table>"
    )


def gates_at(verdicts: pd.DataFrame, times: Sequence[pd.Timestamp]) -> list[str]:
    """At each time, the last state of each gate of the latest step judged by then.

    ``verdicts`` is the frame of ``Replay.verdicts()`` (``t``, ``step``, ``gate``,
    ``state``). Gives ``"step 2: traffic-share passes, max-error-rate collecting"``, or
    ``""`` before the first verdict: the caption of a replay's time slider.
    """
    if verdicts.empty or not len(times):
        return ["" for _ in times]
    ordered = verdicts.sort_values("t", kind="stable")
    stamps = pd.DatetimeIndex(pd.to_datetime(ordered["t"], utc=True)).as_unit("ns").asi8
    at = pd.DatetimeIndex(pd.to_datetime(list(times), utc=True)).as_unit("ns").asi8
    seen = stamps.searchsorted(at, side="right")
    steps = ordered["step"].to_list()
    gates = ordered["gate"].astype(str).to_list()
    states = ordered["state"].astype(str).to_list()
    out = []
    for n in seen:
        if n == 0:
            out.append("")
            continue
        step = steps[n - 1]
        last: dict[str, str] = {}
        for i in range(n):
            if steps[i] == step:
                last[gates[i]] = states[i]
        shown = ", ".join(f"{gate} {state}" for gate, state in last.items())
        label = f"step {int(step)}" if number(step) is not None else "gates"
        out.append(f"{label}: {shown}")
    return out
