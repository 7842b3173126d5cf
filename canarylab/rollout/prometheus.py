"""The I/O half of the metric gates: run their PromQL against Prometheus at every look.

:class:`MetricsFeed` is a traffic source for ``run_plan``. Each ``traffic()`` range-queries
every template the plan's metric gates name, for both sides, from the start of the run to
now at the scrape step, and hands the results to the gates as ``Traffic.metrics``
(:class:`canarylab.gates.metric.MetricEvidence`). Its per-second ``samples`` come from the
first counts template, so the traffic-share gate, the baseline and the route check read
the gateway's counts when no probe runs (``evidence: metrics``); with ``evidence: both`` they
come from the probe as before.

A Prometheus that cannot be reached, answers an error or returns nothing gives evidence
with that ``error``; the gates call it ``insufficient`` and the runner fails the step
closed at ``max_hold``. Every judged query is recorded once per look as a ``metrics``
event with its series, so a replay can show what was judged.

This module must never judge anything itself (``canarylab.gates`` does).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from canarylab import gates as g
from canarylab.gates import metric as m
from canarylab.model.workload import canary_service_name
from canarylab.record.events import Kind

EVIDENCE = ("probe", "metrics", "both")
"""What a runbook's gates judge: the probe's traffic, the gateway's metrics, or both."""

STEP_S = 1.0
"""Range-query resolution: the sandbox's scrape interval."""


class PrometheusClient:
    """Range queries against one Prometheus; errors come back as data, never raised."""

    def __init__(self, url: str, client: httpx.Client | None = None, timeout: float = 3.0):
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def query_range(self, promql: str, start: float, end: float, step: float) -> m.MetricSeries:
        try:
            response = self._client.get(
                f"{self.url}/api/v1/query_range",
                params={"query": promql, "start": start, "end": end, "step": step},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as err:
            return m.MetricSeries(promql, {}, f"Prometheus at {self.url} unreachable: {err}")
        if body.get("status") != "success":
            why = body.get("error") or f"HTTP {response.status_code}"
            return m.MetricSeries(promql, {}, f"Prometheus refused the query: {why}")
        series: dict[str, tuple[m.Point, ...]] = {}
        for item in body.get("data", {}).get("result", []):
            labels = json.dumps(item.get("metric", {}), sort_keys=True)
            series[labels] = tuple((float(t), float(v)) for t, v in item.get("values", []))
        return m.MetricSeries(promql, series)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class _Healthy:
    """What ``health()`` says without a probe: Prometheus trouble is the gates' business."""

    ok: bool = True
    reason: None = None

    def describe(self) -> str:
        return "no probe runs (evidence: metrics)"


@dataclass
class MetricsFeed:
    """A traffic source that adds the gateway's metrics to (or puts them in place of) the
    probe's traffic; see the module docstring."""

    client: PrometheusClient
    templates: Mapping[str, m.MetricTemplate]
    """The templates the plan's metric gates name (template name → template)."""
    namespace: str
    service: str
    """The original's Service; the canary's is ``canary_service_name(service)``."""
    canary_version: str
    original_version: str | None = None
    probe: Any = None
    """The probe feed with ``evidence: both``; None with ``evidence: metrics``."""
    record: Callable[[str, Mapping[str, Any]], object] | None = None
    """Called with ("metrics", fields) once per look (the recorder's ``event``)."""
    clock: Callable[[], float] = time.time
    start: float = field(default=math.nan)
    """Unix seconds the queries start at (default: when the feed was made)."""
    _recorded: dict[tuple[str, str, str], float] = field(default_factory=dict, repr=False)
    """The last timestamp recorded per (template, key, series): each look records only
    the points it added."""

    def __post_init__(self) -> None:
        if math.isnan(self.start):
            self.start = math.floor(self.clock())

    def params(self, now: float) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "canary_service": canary_service_name(self.service),
            "original_service": self.service,
            "since": f"{max(1, math.ceil(now - self.start))}s",
            "interval": f"{int(4 * STEP_S)}s",
        }

    def evidence(self) -> dict[str, m.MetricEvidence]:
        now = math.floor(self.clock())
        params = self.params(now)
        out: dict[str, m.MetricEvidence] = {}
        for name, template in self.templates.items():
            queries = {
                key: self.client.query_range(promql, self.start, now, STEP_S)
                for key, promql in template.queries(params).items()
            }
            out[name] = m.MetricEvidence(name, queries)
        if self.record is not None:
            self.record(Kind.METRICS, {"evidence": _as_record(out, self._recorded)})
        return out

    def traffic(self) -> g.Traffic:
        metrics = self.evidence()
        if self.probe is not None:
            seen = self.probe.traffic()
            return g.Traffic(seen.samples, seen.requests, metrics)
        window = g.Window(self.canary_version, self.original_version)
        counts = next(
            (
                e
                for name, e in metrics.items()
                if self.templates[name].kind == "counts" and e.error is None
            ),
            None,
        )
        samples = m.samples_from_counts(counts, window) if counts is not None else _empty()
        return g.Traffic(samples, None, metrics)

    def health(self) -> Any:
        return self.probe.health() if self.probe is not None else _Healthy()


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["second", "version", "requests", "ok", "http_errors", "timeouts", "conn_errors"]
    )


def _as_record(
    evidence: Mapping[str, m.MetricEvidence], recorded: dict[tuple[str, str, str], float]
) -> list[dict[str, Any]]:
    """The judged series as plain data (template, key, PromQL, error, new points per series);
    ``recorded`` is updated to the last point written of each series."""
    out = []
    for name, e in evidence.items():
        for key, result in e.queries.items():
            series: dict[str, list[list[float | None]]] = {}
            for labels, points in result.series.items():
                last = recorded.get((name, key, labels), -math.inf)
                new = [[t, None if math.isnan(v) else v] for t, v in points if t > last]
                if new:
                    series[labels] = new
                    recorded[(name, key, labels)] = points[-1][0]
            out.append(
                {
                    "template": name,
                    "key": key,
                    "query": result.query,
                    "error": result.error,
                    "series": series,
                }
            )
    return out


def templates_for(
    gates: Sequence[g.Gate], user: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, m.MetricTemplate]:
    """The templates ``gates`` name: the user's (runbook parameter / ConfigMap), else built-in."""
    extra = {name: m.MetricTemplate.from_data(name, data) for name, data in (user or {}).items()}
    return {name: m.template_for(name, extra) for name in m.templates_of(gates)}


def configmap_templates(data: Mapping[str, str]) -> dict[str, Mapping[str, Any]]:
    """Templates from a ConfigMap's ``data``: each key a template name, each value YAML."""
    import yaml

    out: dict[str, Mapping[str, Any]] = {}
    for name, text in data.items():
        value = yaml.safe_load(text)
        if not isinstance(value, Mapping):
            raise m.MetricTemplateError(
                f"ConfigMap entry {name!r} must be a YAML mapping with requests/failures or value"
            )
        out[name] = value
    return out


def evidence_source(
    evidence: str,
    probe: Any,
    *,
    prometheus: str | None,
    gates: Sequence[g.Gate],
    namespace: str,
    service: str,
    version: str,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    record: Callable[[str, Mapping[str, Any]], object] | None = None,
) -> Any:
    """What ``run_plan`` judges for a runbook's ``evidence`` setting (see ``EVIDENCE``).

    ``probe`` (the probe feed, None with ``metrics``) comes back unchanged for ``probe``;
    otherwise a :class:`MetricsFeed` for the metric gates among ``gates`` (every step's).
    Refuses, before anything changes, settings that could only ever be ``insufficient``.
    """
    if evidence not in EVIDENCE:
        raise m.MetricTemplateError(
            f"evidence must be one of {', '.join(EVIDENCE)}, not {evidence!r}"
        )
    if evidence == "probe":
        return probe
    chosen = templates_for(gates, templates)
    if not chosen:
        raise m.MetricTemplateError(
            f"evidence: {evidence} needs at least one metric gate, e.g. gates = "
            '{"metric_comparison": "haproxy/request-success-rate"} '
            f"(built-in templates: {', '.join(sorted(m.BUILTIN))})"
        )
    if evidence == "metrics":
        per_request = sorted({gate.name for gate in gates if isinstance(gate, g.LatencyComparison)})
        if per_request:
            raise m.MetricTemplateError(
                f"evidence: metrics runs no probe, so {', '.join(per_request)} (per-request "
                "latencies) could never decide: drop it, or use evidence: both"
            )
    if not prometheus:
        raise m.MetricTemplateError(
            f"evidence: {evidence} needs Prometheus: pass prometheus=<URL>, or use the sandbox "
            "(`canarylab sandbox status` shows its Prometheus)"
        )
    return MetricsFeed(
        PrometheusClient(prometheus),
        chosen,
        namespace,
        service,
        version,
        probe=probe,
        record=record,
    )
