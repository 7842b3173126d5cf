"""Metric gates: judge the gateway's own metrics (Prometheus) instead of the probe's traffic.

A :class:`MetricTemplate` is PromQL with parameters (``PARAMETERS``), rendered once per
side with ``{service}`` naming that side's Service. It comes in two kinds:

- **counts**: ``requests`` and ``failures`` give cumulative counters (possibly several
  series, one per server). Range-queried over the run, their per-scrape increments are
  per-interval event counts, and :class:`MetricComparison` judges them with the very
  sequential test the probe's comparison uses (it builds the same per-second samples
  and hands them to :class:`~canarylab.gates.comparison.ErrorRateComparison`).
- **ratio**: ``value`` gives one number per side (an average latency, say) that has no
  sampling model; :class:`MetricThreshold` compares the canary's latest values with a
  limit (absolute, or a ratio of the original's), each with a stated tolerance.

Prometheus unreachable, a query error and an empty result are all ``insufficient``:
missing evidence never passes a step (the runner fails it closed at ``max_hold``).

This module must never do I/O or read a clock: the queries are run elsewhere
(``canarylab.rollout.prometheus``) and arrive as :class:`MetricEvidence` on the
:class:`~canarylab.gates.window.Traffic` a gate judges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pandas as pd

from .comparison import ErrorRateComparison
from .verdict import Verdict
from .window import Traffic, Window

PARAMETERS = ("namespace", "service", "canary_service", "original_service", "since", "interval")
"""What a template may contain as ``{name}``. ``{service}`` is the side being queried;
``{since}`` is the judged span as a PromQL duration (``93s``); ``{interval}`` is a
``rate()`` window of a few scrapes (``4s``). Any other brace is PromQL's own."""

SIDES = ("canary", "original")
Point = tuple[float, float]
"""(Unix seconds, value) of one sample of a range query."""

_PARAMETER = re.compile(r"\{(" + "|".join(PARAMETERS) + r")\}")


class MetricTemplateError(ValueError):
    """A metric template (a runbook parameter or a ConfigMap entry) is unusable."""


def render(text: str, params: Mapping[str, str]) -> str:
    """``text`` with every ``{parameter}`` replaced; PromQL's own braces are left alone."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise MetricTemplateError(f"template parameter {{{name}}} has no value here")
        return str(params[name])

    return _PARAMETER.sub(one, text)


@dataclass(frozen=True)
class MetricTemplate:
    """PromQL that measures one side of a canary (see the module docstring)."""

    name: str
    description: str = ""
    requests: str | None = None
    """counts: a cumulative counter of the side's requests (one or more series)."""
    failures: str | None = None
    """counts: a cumulative counter of the side's failed (or too slow) requests."""
    value: str | None = None
    """ratio: one number for the side, evaluated at each scrape."""
    unit: str = ""

    def __post_init__(self) -> None:
        counts = self.requests is not None and self.failures is not None
        if counts == (self.value is not None) or (self.requests is None) != (self.failures is None):
            raise MetricTemplateError(
                f"metric template {self.name!r}: give either `requests` and `failures` "
                "(cumulative counters) or `value` (one number per side), not both or neither"
            )

    @property
    def kind(self) -> Literal["counts", "ratio"]:
        return "ratio" if self.value is not None else "counts"

    def queries(self, params: Mapping[str, str]) -> dict[str, str]:
        """``"<side>.<what>"`` → rendered PromQL, ``params`` without ``service``."""
        parts = {"requests": self.requests, "failures": self.failures, "value": self.value}
        out: dict[str, str] = {}
        for side in SIDES:
            service = params[f"{side}_service"]
            for what, text in parts.items():
                if text is not None:
                    out[f"{side}.{what}"] = render(text, {**params, "service": service})
        return out

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, object]) -> MetricTemplate:
        """A template from plain data (a runbook parameter, a ConfigMap's YAML value)."""
        known = {"description", "requests", "failures", "value", "unit"}
        unknown = set(data) - known
        if unknown:
            raise MetricTemplateError(
                f"metric template {name!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                f"its fields are {', '.join(sorted(known))}"
            )
        fields = {k: str(v) for k, v in data.items() if v is not None}
        return cls(name=name, **fields)


# The HAProxy data plane names each server <namespace>.<service>.<port>
# (canarylab.dataplane.haproxy.server_name), so one regex selects a side.
_HAPROXY_SERVER = 'server=~"{namespace}\\\\.{service}\\\\.[0-9]+"'
# APISIX's plugin has no label for the upstream Service by default; these templates
# expect one named `upstream` (docs/reference.md, "APISIX").
_APISIX_SIDE = 'upstream=~"{namespace}_{service}_.*"'

BUILTIN: Mapping[str, MetricTemplate] = {
    t.name: t
    for t in (
        MetricTemplate(
            "haproxy/request-success-rate",
            "requests the side's servers were chosen for, and of those the 5xx answers, "
            "response errors (timeouts: HAProxy answers 504) and connection errors",
            requests=f"sum by (server) (haproxy_server_loadbalanced_total{{{_HAPROXY_SERVER}}})",
            failures=(
                "sum by (server) (haproxy_server_http_responses_total"
                f'{{code="5xx",{_HAPROXY_SERVER}}})'
                f" + sum by (server) (haproxy_server_response_errors_total{{{_HAPROXY_SERVER}}})"
                " + sum by (server) (haproxy_server_connection_errors_total"
                f"{{{_HAPROXY_SERVER}}})"
            ),
        ),
        MetricTemplate(
            "haproxy/request-duration",
            "the side's average response time over its last 1,024 requests (seconds)",
            value=(f"max(haproxy_server_response_time_average_seconds{{{_HAPROXY_SERVER}}})"),
            unit="s",
        ),
        MetricTemplate(
            "apisix/request-success-rate",
            "apisix_http_status answers of the side's upstream, and of those the 5xx",
            requests=f"sum by (node) (apisix_http_status{{{_APISIX_SIDE}}})",
            failures=f'sum by (node) (apisix_http_status{{code=~"5..",{_APISIX_SIDE}}})',
        ),
        MetricTemplate(
            "apisix/request-duration",
            "the side's 99th percentile request latency from apisix_http_latency (ms)",
            value=(
                "histogram_quantile(0.99, sum by (le) (rate(apisix_http_latency_bucket"
                f'{{type="request",{_APISIX_SIDE}}}[{{interval}}])))'
            ),
            unit="ms",
        ),
    )
}
"""The built-in templates by name (``<gateway>/<measure>``)."""


def template_for(name: str, extra: Mapping[str, MetricTemplate] | None = None) -> MetricTemplate:
    """A template by name: the user's (``extra``) first, then the built-ins."""
    found = (extra or {}).get(name) or BUILTIN.get(name)
    if found is None:
        names = ", ".join(sorted({*BUILTIN, *(extra or {})}))
        raise MetricTemplateError(f"unknown metric template {name!r}; known: {names}")
    return found


# ------------------------------------------------------------------ evidence
@dataclass(frozen=True)
class MetricSeries:
    """What one range query returned: its PromQL and its series (labels → points)."""

    query: str
    series: Mapping[str, tuple[Point, ...]] = field(default_factory=dict)
    error: str | None = None
    """Why the query gave nothing usable (unreachable, a PromQL error, ...)."""


@dataclass(frozen=True)
class MetricEvidence:
    """One template's queries for both sides, as run at one look."""

    template: str
    queries: Mapping[str, MetricSeries]
    """``"<side>.<what>"`` → the range query's result."""

    @property
    def error(self) -> str | None:
        """The first problem (a failed query, or an empty result), else None."""
        for key, result in self.queries.items():
            if result.error:
                return f"{key}: {result.error} (PromQL: {result.query})"
            if not result.series:
                return f"{key}: the query returned no series (PromQL: {result.query})"
        return None


def increments(series: Mapping[str, tuple[Point, ...]]) -> dict[float, float]:
    """Per-timestamp increase of cumulative counters, summed over series.

    Each series counts from its own first point, except that a series that starts later
    than the others is a new server whose counter started at 0. A decrease is a counter
    reset (a restarted process): the new value is the increase, as Prometheus reads it.
    """
    starts = [points[0][0] for points in series.values() if points]
    if not starts:
        return {}
    start = min(starts)
    out: dict[float, float] = {}
    for points in series.values():
        previous: float | None = None if points and points[0][0] > start else math.nan
        for t, v in points:
            if math.isnan(v):
                continue
            if previous is None:
                delta = v
            elif math.isnan(previous):
                delta = 0.0
            else:
                delta = v - previous if v >= previous else v
            out[t] = out.get(t, 0.0) + delta
            previous = v
    return out


def samples_from_counts(evidence: MetricEvidence, window: Window) -> pd.DataFrame:
    """The counts as per-second samples in the probe's schema, one row per side and scrape.

    The canary's rows carry ``window.canary``, the original's ``window.original`` (or
    ``"original"``); failures are ``http_errors``.
    """
    versions = {"canary": window.canary, "original": window.original or "original"}
    rows = []
    for side in SIDES:
        requests = increments(evidence.queries[f"{side}.requests"].series)
        failures = increments(evidence.queries[f"{side}.failures"].series)
        for t in sorted(set(requests) | set(failures)):
            # A timeout is counted when it ends, often a scrape after the request was: a
            # failure is never dropped for want of a request in the same interval.
            f = max(0, round(failures.get(t, 0.0)))
            n = max(f, round(requests.get(t, 0.0)))
            rows.append((pd.Timestamp(t, unit="s", tz="UTC"), versions[side], n, n - f, f))
    frame = pd.DataFrame(rows, columns=["second", "version", "requests", "ok", "http_errors"])
    frame["timeouts"] = 0
    frame["conn_errors"] = 0
    return frame


def _queries_text(evidence: MetricEvidence, keys: Sequence[str]) -> str:
    return "; ".join(f"{k}: {evidence.queries[k].query}" for k in keys if k in evidence.queries)


def _missing(name: str, template: str, evidence: MetricEvidence | None) -> Verdict | None:
    if evidence is None:
        return Verdict(name, "insufficient", f"no metrics were queried for template {template}", {})
    problem = evidence.error
    if problem is not None:
        return Verdict(
            name,
            "insufficient",
            f"no usable metrics for {template}: {problem}",
            {"template": template},
        )
    return None


@dataclass(frozen=True)
class MetricComparison:
    """A counts template's failures, canary against original, by the sequential test of
    :class:`~canarylab.gates.comparison.ErrorRateComparison` (same fields, same level)."""

    template: str = "haproxy/request-success-rate"
    alpha: float = 0.01
    min_difference: float = 0.005
    min_requests: int = 100
    name: str = "metric-comparison"
    compares_original: ClassVar[bool] = True

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        evidence = traffic.metrics.get(self.template)
        missing = _missing(self.name, self.template, evidence)
        if missing is not None or evidence is None:
            return missing or Verdict(self.name, "insufficient", "no metrics", {})
        frame = samples_from_counts(evidence, window)
        test = ErrorRateComparison(
            alpha=self.alpha,
            min_difference=self.min_difference,
            min_requests=self.min_requests,
            name=self.name,
        )
        # The queries start where the evidence should (the run's first step); no probe
        # baseline applies to the gateway's own counts.
        judged = test.judge(Traffic(frame), Window(window.canary, window.original))
        keys = ("canary.failures", "canary.requests", "original.failures", "original.requests")
        numbers = {
            **judged.numbers,
            "template": self.template,
            **{f"promql_{k.replace('.', '_')}": evidence.queries[k].query for k in keys},
        }
        reason = f"{self.template} from Prometheus: {judged.reason}; PromQL " + _queries_text(
            evidence, keys[:2]
        )
        return Verdict(self.name, judged.outcome, reason, numbers)


@dataclass(frozen=True)
class MetricThreshold:
    """A ratio template's canary value against a limit, each with a stated tolerance.

    Fails when the canary's last ``looks`` values all exceed ``limit + tolerance``
    (when ``limit`` is set) or ``max_ratio`` × the original's value at the same scrape
    ``+ tolerance`` (when ``max_ratio`` is set); passes once it has ``looks`` values and
    has not failed. ``higher_is_worse=False`` turns both limits into floors.
    """

    template: str = "haproxy/request-duration"
    limit: float | None = None
    max_ratio: float | None = 1.5
    tolerance: float = 0.005
    """Absolute slack (in the template's unit) over either limit before a value counts."""
    looks: int = 3
    higher_is_worse: bool = True
    name: str = "metric-threshold"

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        evidence = traffic.metrics.get(self.template)
        missing = _missing(self.name, self.template, evidence)
        if missing is not None or evidence is None:
            return missing or Verdict(self.name, "insufficient", "no metrics", {})
        if self.limit is None and self.max_ratio is None:
            raise MetricTemplateError(f"gate {self.name}: set `limit`, `max_ratio` or both")
        canary = _latest(evidence.queries["canary.value"].series)
        original = dict(_latest(evidence.queries["original.value"].series))
        sign = 1.0 if self.higher_is_worse else -1.0
        recent = canary[-self.looks :]

        def bound(t: float) -> float:
            bounds = []
            if self.limit is not None:
                bounds.append(self.limit)
            if self.max_ratio is not None and t in original:
                bounds.append(self.max_ratio * original[t])
            if not bounds:
                return math.nan
            tightest = min(bounds) if self.higher_is_worse else max(bounds)
            return tightest + sign * self.tolerance

        over = [sign * (v - bound(t)) > 0 for t, v in recent if not math.isnan(bound(t))]
        last_t, last_v = recent[-1] if recent else (math.nan, math.nan)
        numbers: dict[str, float | int | str | None] = {
            "template": self.template,
            "canary_value": last_v,
            "original_value": original.get(last_t, math.nan),
            "bound": bound(last_t) if recent else math.nan,
            "limit": self.limit,
            "max_ratio": self.max_ratio,
            "tolerance": self.tolerance,
            "looks_over": sum(over),
            "promql_canary_value": evidence.queries["canary.value"].query,
        }
        what = (
            f"{self.template} canary {last_v:.4g} vs original "
            f"{numbers['original_value']:.4g}, bound {numbers['bound']:.4g} "
            f"(limit {self.limit}, ×{self.max_ratio} the original, tolerance {self.tolerance:g})"
        )
        query = f"; PromQL {evidence.queries['canary.value'].query}"
        if len(over) >= self.looks and all(over):
            return Verdict(
                self.name, "fail", f"{what}: beyond it {self.looks} looks in a row{query}", numbers
            )
        if len(over) < self.looks:
            return Verdict(
                self.name,
                "insufficient",
                f"{what}: {len(over)} of {self.looks} values so far{query}",
                numbers,
            )
        return Verdict(self.name, "pass", f"{what}: within{query}", numbers)


def _latest(series: Mapping[str, tuple[Point, ...]]) -> list[Point]:
    """One value per timestamp (the largest over series: the worst server), in time order."""
    out: dict[float, float] = {}
    for points in series.values():
        for t, v in points:
            if not math.isnan(v):
                out[t] = max(v, out.get(t, -math.inf))
    return sorted(out.items())


METRIC_GATES: Mapping[str, type[MetricComparison] | type[MetricThreshold]] = {
    "metric_comparison": MetricComparison,
    "metric_threshold": MetricThreshold,
}
"""Spec keys of the metric gates (``canarylab.gates.spec.GATES`` includes them)."""


def templates_of(gates: Sequence[object]) -> list[str]:
    """The template names the given gates need queried (in order, once each)."""
    names: list[str] = []
    for gate in gates:
        name = getattr(gate, "template", None)
        if isinstance(gate, MetricComparison | MetricThreshold) and name not in names:
            names.append(str(name))
    return names
