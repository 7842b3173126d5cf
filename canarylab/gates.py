"""Gates: pure judgement of a canary step from the probe's samples and requests.

A gate looks at the traffic since a step began and returns a :class:`Verdict`:
``pass``, ``fail`` or ``insufficient`` (too few requests to judge), always with the
numbers it judged on (counts, rates, p99s, p-values), so a failed rollout can say
exactly why.

Threshold gates (:class:`MaxErrorRate`, :class:`MaxP99Latency`) bound the canary on
its own. Comparison gates test canary against original the way Kayenta does: a
one-sided two-proportion z-test on error rates (:class:`ErrorRateComparison`) and a
one-sided Mann-Whitney U test on latencies (:class:`LatencyComparison`), each at a
significance level and with a minimum effect, so that a statistically significant but
harmless difference does not roll a healthy canary back.

This module must never do I/O, read a clock or talk to a cluster: it takes
DataFrames in the schema of docs/architecture.md and returns frozen values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import pandas as pd

from canarylab.model.samples import FAILURE_KINDS

Outcome = Literal["pass", "fail", "insufficient"]
Numbers = Mapping[str, float | int | str | None]

#: columns whose sum is the failures of a sample row
FAILURE_COLUMNS = FAILURE_KINDS


@dataclass(frozen=True)
class Verdict:
    """What one gate decided about one window of traffic, with its numbers."""

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


@dataclass(frozen=True)
class Window:
    """Which traffic a gate judges: the versions to compare, from when."""

    canary: str
    """The canary's version as the probe's classifier reports it."""
    original: str | None = None
    """The original (parent) version; ``None`` means every version except the canary
    and ``unknown``."""
    since: pd.Timestamp | None = None
    """Start of the step; only traffic at or after it is judged."""


class Gate(Protocol):
    """Anything that judges a window of traffic."""

    @property
    def name(self) -> str: ...

    def judge(self, traffic: Traffic, window: Window) -> Verdict: ...


@dataclass(frozen=True)
class Traffic:
    """The probe's output: per-second samples and, when kept, per-request results."""

    samples: pd.DataFrame
    requests: pd.DataFrame | None = None

    def since(self, start: pd.Timestamp | None) -> Traffic:
        """Only the traffic from the first whole second at or after ``start``.

        Per-second buckets that begin before ``start`` are dropped, and so are the
        per-request results in them, so counts and latencies describe the same requests.
        """
        if start is None:
            return self
        samples = self.samples
        if len(samples):
            samples = samples[samples["second"] >= start]
        requests = self.requests
        if requests is not None and len(requests):
            t = requests["t"]
            # The same boundary as the samples: the first whole second at or after start.
            first = start.ceil("s")
            # The probe keeps ``t`` as Unix seconds; records keep timestamps. Accept both.
            bound: Any = first.timestamp() if pd.api.types.is_numeric_dtype(t) else first
            requests = requests[t >= bound]
        return Traffic(samples, requests)


@dataclass(frozen=True)
class Side:
    """Counts of one side (canary or original) in a window."""

    requests: int
    failures: int
    latencies_ms: tuple[float, ...] | None
    """Per-request latencies of responses, when per-request results were kept."""
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else math.nan


def side(traffic: Traffic, versions: Sequence[str] | None, exclude: Sequence[str] = ()) -> Side:
    """Aggregate the rows of ``versions`` (or all but ``exclude`` when ``versions`` is None)."""
    s = traffic.samples
    if len(s):
        mask = s["version"].isin(versions) if versions is not None else ~s["version"].isin(exclude)
        s = s[mask]
    n = int(s["requests"].sum()) if len(s) else 0
    failures = int(sum(s[c].sum() for c in FAILURE_COLUMNS)) if len(s) else 0
    latencies: tuple[float, ...] | None = None
    p99 = math.nan
    r = traffic.requests
    if r is not None:
        if len(r):
            rmask = (
                r["version"].isin(versions) if versions is not None else ~r["version"].isin(exclude)
            )
            ok = r[rmask & r["latency_ms"].notna() & r["error"].isna()]
            latencies = tuple(float(x) for x in ok["latency_ms"])
        else:
            latencies = ()
        if latencies:
            p99 = float(pd.Series(latencies).quantile(0.99))
    elif len(s) and s["p99_ms"].notna().any():
        # Without per-request data the worst per-second p99 is the honest upper bound.
        p99 = float(s["p99_ms"].max())
    return Side(n, failures, latencies, p99)


def _sides(traffic: Traffic, window: Window) -> tuple[Side, Side]:
    t = traffic.since(window.since)
    canary = side(t, [window.canary])
    if window.original is not None:
        original = side(t, [window.original])
    else:
        original = side(t, None, exclude=[window.canary, "unknown"])
    return canary, original


@dataclass(frozen=True)
class MaxErrorRate:
    """The canary's failures ÷ requests must stay at or below ``limit``."""

    limit: float
    min_requests: int = 50
    name: str = "max-error-rate"

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        canary, _ = _sides(traffic, window)
        numbers = {
            "canary_requests": canary.requests,
            "canary_failures": canary.failures,
            "canary_error_rate": canary.error_rate,
            "limit": self.limit,
        }
        if canary.requests < self.min_requests:
            return Verdict(self.name, "insufficient", _too_few(canary, self.min_requests), numbers)
        bad = canary.error_rate > self.limit
        reason = (
            f"canary error rate {canary.error_rate:.2%} "
            f"{'exceeds' if bad else 'is within'} the limit {self.limit:.2%}"
        )
        return Verdict(self.name, "fail" if bad else "pass", reason, numbers)


@dataclass(frozen=True)
class MaxP99Latency:
    """The canary's p99 latency must stay at or below ``limit_ms``."""

    limit_ms: float
    min_requests: int = 50
    name: str = "max-p99-latency"

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        canary, _ = _sides(traffic, window)
        numbers = {
            "canary_requests": canary.requests,
            "canary_p99_ms": canary.p99_ms,
            "limit_ms": self.limit_ms,
        }
        if canary.requests < self.min_requests or math.isnan(canary.p99_ms):
            return Verdict(self.name, "insufficient", _too_few(canary, self.min_requests), numbers)
        bad = canary.p99_ms > self.limit_ms
        reason = (
            f"canary p99 {canary.p99_ms:.1f} ms "
            f"{'exceeds' if bad else 'is within'} the limit {self.limit_ms:.1f} ms"
        )
        return Verdict(self.name, "fail" if bad else "pass", reason, numbers)


def two_proportion_pvalue(failures_a: int, n_a: int, failures_b: int, n_b: int) -> float:
    """One-sided p-value that A's failure proportion exceeds B's (pooled z-test)."""
    from scipy.stats import norm

    if n_a == 0 or n_b == 0:
        return math.nan
    pooled = (failures_a + failures_b) / (n_a + n_b)
    if pooled in (0.0, 1.0):
        return 1.0  # no variation at all: nothing can be significant
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (failures_a / n_a - failures_b / n_b) / se
    return float(norm.sf(z))


@dataclass(frozen=True)
class ErrorRateComparison:
    """Canary's error rate must not be significantly above the original's.

    Fails when the one-sided two-proportion z-test gives ``p < alpha`` *and* the canary's
    rate exceeds the original's by more than ``min_difference`` (absolute).
    """

    alpha: float = 0.01
    min_difference: float = 0.01
    min_requests: int = 100
    name: str = "error-rate-comparison"
    compares_original: ClassVar[bool] = True

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        canary, original = _sides(traffic, window)
        p = two_proportion_pvalue(
            canary.failures, canary.requests, original.failures, original.requests
        )
        numbers: dict[str, float | int | str | None] = {
            "canary_requests": canary.requests,
            "canary_failures": canary.failures,
            "canary_error_rate": canary.error_rate,
            "original_requests": original.requests,
            "original_failures": original.failures,
            "original_error_rate": original.error_rate,
            "p_value": p,
            "alpha": self.alpha,
        }
        if min(canary.requests, original.requests) < self.min_requests:
            return Verdict(
                self.name, "insufficient", _too_few(canary, self.min_requests, original), numbers
            )
        diff = canary.error_rate - original.error_rate
        bad = p < self.alpha and diff > self.min_difference
        reason = (
            f"canary error rate {canary.error_rate:.2%} vs original {original.error_rate:.2%}, "
            f"p-value {p:.3g} {'<' if p < self.alpha else '≥'} alpha {self.alpha}"
        )
        return Verdict(self.name, "fail" if bad else "pass", reason, numbers)


@dataclass(frozen=True)
class LatencyComparison:
    """Canary's latencies must not be significantly above the original's.

    Fails when the one-sided Mann-Whitney U test (canary greater) gives ``p < alpha``
    *and* the canary's median exceeds the original's by more than ``max_ratio``
    times. Needs per-request results.
    """

    alpha: float = 0.01
    max_ratio: float = 1.2
    min_requests: int = 100
    name: str = "latency-comparison"
    compares_original: ClassVar[bool] = True

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        from scipy.stats import mannwhitneyu

        canary, original = _sides(traffic, window)
        if canary.latencies_ms is None or original.latencies_ms is None:
            return Verdict(
                self.name,
                "insufficient",
                "no per-request latencies: run the probe with per-request results kept",
                {},
            )
        a = pd.Series(canary.latencies_ms, dtype=float)
        b = pd.Series(original.latencies_ms, dtype=float)
        med_a = float(a.median()) if len(a) else math.nan
        med_b = float(b.median()) if len(b) else math.nan
        numbers: dict[str, float | int | str | None] = {
            "canary_responses": len(a),
            "canary_median_ms": med_a,
            "canary_p99_ms": canary.p99_ms,
            "original_responses": len(b),
            "original_median_ms": med_b,
            "original_p99_ms": original.p99_ms,
            "p_value": math.nan,
            "alpha": self.alpha,
        }
        if min(len(a), len(b)) < self.min_requests:
            return Verdict(
                self.name,
                "insufficient",
                f"only {len(a)} canary and {len(b)} original responses; "
                f"need {self.min_requests} each",
                numbers,
            )
        p = float(mannwhitneyu(a, b, alternative="greater").pvalue)
        numbers["p_value"] = p
        ratio = med_a / med_b if med_b > 0 else math.inf
        bad = p < self.alpha and ratio > self.max_ratio
        reason = (
            f"canary median {med_a:.2f} ms vs original {med_b:.2f} ms (×{ratio:.2f}), "
            f"Mann-Whitney p-value {p:.3g} {'<' if p < self.alpha else '≥'} alpha {self.alpha}"
        )
        return Verdict(self.name, "fail" if bad else "pass", reason, numbers)


def judge_all(gates: Sequence[Gate], traffic: Traffic, window: Window) -> list[Verdict]:
    """Every gate's verdict on the same window."""
    return [g.judge(traffic, window) for g in gates]


def compares_original(gate: Gate) -> bool:
    """True for gates that judge canary against original (meaningless at weight 100)."""
    return bool(getattr(gate, "compares_original", False))


def first_failure(verdicts: Sequence[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.failed), None)


_GATES: dict[str, type[Any]] = {
    "max_error_rate": MaxErrorRate,
    "max_p99_latency": MaxP99Latency,
    "error_rate_comparison": ErrorRateComparison,
    "latency_comparison": LatencyComparison,
}


class GateSpecError(ValueError):
    """A gate written as data (a runbook parameter) could not be understood."""


def from_spec(spec: Mapping[str, Any]) -> list[Gate]:
    """Gates from plain data, the shape a runbook parameter takes.

    ``{"max_error_rate": 0.05, "error_rate_comparison": {"alpha": 0.01}}``: a number is
    the gate's first field (limit or alpha), a mapping gives its fields by name.
    """
    gates: list[Gate] = []
    for key, value in spec.items():
        cls = _GATES.get(key)
        if cls is None:
            raise GateSpecError(
                f"unknown gate {key!r}; known gates are {', '.join(sorted(_GATES))}"
            )
        try:
            if isinstance(value, Mapping):
                gates.append(cls(**value))
            elif value is True:
                gates.append(cls())
            else:
                gates.append(cls(value))
        except TypeError as err:
            raise GateSpecError(f"gate {key!r}: {err}") from None
    return gates


def _too_few(canary: Side, need: int, original: Side | None = None) -> str:
    if original is None:
        return f"only {canary.requests} canary requests since the step began; need {need}"
    return (
        f"only {canary.requests} canary and {original.requests} original requests "
        f"since the step began; need {need} each"
    )


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
