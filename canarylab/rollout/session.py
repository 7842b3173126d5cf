"""A runbook's rollout, end to end: record, probe, plan, summary — what the notebook calls.

``RolloutSession`` keeps ``runbooks/canary-rollout.ipynb`` thin: the notebook passes
its parameters here and displays what comes back. The session opens (or continues)
the record in ``<output_dir>/record``, starts the probe in the background, runs the
plan (resuming from the resource's status), and always — success, gate failure or
error — stops the probe, flushes the record, writes ``summary.csv`` and sets the
record's outcome before the error propagates.

This module must never judge traffic itself (``canarylab.gates``) nor draw charts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from canarylab.interrupts import sigterm_as_interrupt
from canarylab.record import Recorder
from canarylab.record.events import ExitCode, Outcome, Reason
from canarylab.record.writer import now
from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.plan import Plan, plan_from, resume_point, summary_table
from canarylab.rollout.resource import Rollout
from canarylab.rollout.runner import (
    Canary,
    PlanOutcome,
    RolloutStopped,
    record_finished,
    run_plan,
)
from canarylab.rollout.traffic import ProbeError, ProbeFeed

if TYPE_CHECKING:
    from canarylab.kube import Target


@dataclass(frozen=True)
class RunbookParameters:
    """The canary-rollout runbook's parameters (the papermill ``parameters`` cell)."""

    namespace: str
    parent: str
    version: str
    image: str | None = None
    replicas: int = 1
    canary_env: Mapping[str, str] | None = None
    steps: tuple[Any, ...] = (5, 25, 50, 100)
    hold: float = 30
    max_hold: float | None = None
    """Longest hold while a gate still collects (default: ``default_max_hold(hold)``)."""
    on_insufficient: str = "fail"
    """``fail`` (default): a step whose gates are still collecting at max_hold fails."""
    gates: Mapping[str, Any] | None = None
    alpha: float | None = 0.01
    """The whole rollout's false-alarm probability, split over steps x gates."""
    lease: float | None = 30
    """Seconds of the driver's lease (None: no lease; the controller then never pauses)."""
    probe_target: str | None = None
    """Gateway URL; None: the cluster's own gateway (``canarylab.kube.Target.probe_target``)."""
    probe_rate: float = 200
    probe_classifier: str = "header:X-Canarylab-Version"
    probe_headers: Mapping[str, str] | None = None
    """Request headers; with the sandbox gateway, ``Host`` defaults to the route's host."""
    output_dir: str = "out/rollout"
    dry_run: bool = False
    kubeconfig: str | None = None
    router: str = "apisix"
    route: str | None = None
    name: str | None = None
    evidence: str = "probe"
    """What the gates judge: ``probe``, ``metrics`` (the gateway's, from Prometheus; no
    probe runs) or ``both`` (``canarylab.rollout.prometheus.EVIDENCE``)."""
    prometheus: str | None = None
    """Prometheus URL for metric gates; None: the cluster's (the sandbox's own)."""
    metric_templates: Mapping[str, Any] | None = None
    """User PromQL templates by name (``canarylab.gates.metric.MetricTemplate`` fields)."""
    metric_templates_configmap: str | None = None
    """A ConfigMap in ``namespace`` whose keys are template names and values YAML
    mappings of the same fields; ``metric_templates`` overrides its entries."""
    service: str | None = None
    """The parent's Service, which metric templates query as ``{original_service}``
    (default: the parent's name); the canary's is ``<service>-canary``."""

    def plan(self) -> Plan:
        return plan_from(
            list(self.steps),
            hold_s=self.hold,
            gates=self.gates,
            alpha=self.alpha,
            max_hold_s=self.max_hold,
            on_insufficient=self.on_insufficient,
        )

    def canary(self) -> Canary:
        return Canary(
            version=self.version,
            image=self.image,
            replicas=self.replicas,
            env=dict(self.canary_env or {}),
            router=self.router,
            route=self.route,
        )


class RolloutSession:
    """One run of the canary-rollout runbook; see the module docstring."""

    def __init__(self, params: RunbookParameters, target: Target | None = None) -> None:
        """``target``: the resolved cluster (default: ``canarylab.kube.resolve`` of the
        ``kubeconfig`` parameter); it gives both the API client and the probe target."""
        from canarylab.kube import resolve

        self.params = params
        self.plan = params.plan()  # bad steps/gates fail here, before anything changes
        self.out = Path(params.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.target = target if target is not None else resolve(params.kubeconfig)
        self.kube = self.target.api_client()
        self.recorder = Recorder(
            self.out / "record",
            {
                "kind": "canary-rollout",
                "namespace": params.namespace,
                "parent": params.parent,
                "name": params.name or params.parent,
                "version": params.version,
                "image": params.image,
                "cluster": self.kube.configuration.host,
                "parameters": _jsonable(params.__dict__),
            },
        )
        self.rollout = Rollout(
            params.namespace,
            params.parent,
            name=params.name,
            kube=self.kube,
            recorder=self.recorder,
        )
        self.feed: ProbeFeed | None = None
        self.outcome: PlanOutcome | None = None
        self.rows: list[dict[str, Any]] = []

    @property
    def record_dir(self) -> Path:
        return self.out / "record"

    def describe(self) -> str:
        """The plan and where the rollout stands, for the dry-run cell and logs."""
        status = self.rollout.status()
        start = resume_point(self.plan, status)
        lines = [
            f"cluster: {self.kube.configuration.host}",
            f"canary: {self.params.namespace}/{self.rollout.name} of Deployment "
            f"{self.params.parent} → {self.params.version} ({self.params.image or 'template'})",
            f"now: {status.brief()}",
            *self.plan.describe(),
        ]
        if status.exists:
            lines.append(f"a run now would resume at step {start.first_step + 1}")
        return "\n".join(lines)

    def start_probe(self) -> ProbeFeed:
        """Start the probe against ``probe_target`` (default: the cluster's gateway).

        A target that never serves raises :class:`RolloutStopped` (``ProbeUnreachable``)
        after rolling back a canary left by an earlier run; nothing else changes.
        """
        p = self.params
        probe = self.target.probe_target(
            p.probe_target,
            route=p.route or p.parent,
            namespace=p.namespace,
            headers=p.probe_headers,
        )
        target, headers = probe.url, dict(probe.headers)
        self.recorder.update_metadata(
            probe={"target": target, "rate": p.probe_rate, "headers": headers}
        )
        try:
            self.feed = ProbeFeed.start(
                target,
                rate=p.probe_rate,
                classifier=p.probe_classifier,
                headers=headers,
                recorder=self.recorder,
            )
        except ProbeError as err:
            stopped = self._unreachable(target, err)
            self.finish(stopped.outcome, stopped.reason)
            raise stopped from None
        return self.feed

    def _unreachable(self, target: str, err: ProbeError) -> RolloutStopped:
        rolled_back, existed = True, self.rollout.status().exists
        if existed:  # an earlier run's canary: take its traffic away
            try:
                self.rollout.abort()
            except Exception:
                rolled_back = False
        stopped = RolloutStopped(
            Reason.PROBE_UNREACHABLE,
            f"the probe's target {target} does not serve ({err}); check probe_target and "
            "probe_headers (the Host the gateway routes on)",
            rolled_back=rolled_back,
            changed=existed,
        )
        record_finished(self.recorder, stopped.outcome, stopped.reason, str(stopped))
        return stopped

    def run(self) -> PlanOutcome:
        """Run the plan; always finish the record, then re-raise any failure."""
        outcome: Outcome = Outcome.FAILED
        reason: Reason | None = Reason.ROLLOUT_ERROR
        try:
            with self._lease(), sigterm_as_interrupt():
                self.outcome = run_plan(
                    self.rollout,
                    self.plan,
                    self.params.canary(),
                    self.evidence(),
                    on_step=lambda r: self.rows.append(dict(r.summary)),
                )
            outcome, reason = Outcome.SUCCEEDED, None
            return self.outcome
        except RolloutStopped as err:
            outcome, reason = err.outcome, err.reason
            if err.summary:
                self.rows.append(err.summary)
            raise
        finally:
            self.finish(outcome, reason)

    def evidence(self) -> Any:
        """The traffic source the gates judge (``evidence``): the probe feed, the gateway's
        metrics (``canarylab.rollout.prometheus.MetricsFeed``), or both."""
        from canarylab.rollout.prometheus import evidence_source

        p = self.params
        return evidence_source(
            p.evidence,
            self.feed,
            prometheus=p.prometheus or self.target.prometheus,
            gates=[gate for step in self.plan.steps for gate in step.gates],
            namespace=p.namespace,
            service=p.service or p.parent,
            version=p.version,
            templates={**self._configmap_templates(), **(p.metric_templates or {})},
            record=lambda kind, fields: self.recorder.event(kind, **fields),
        )

    def _configmap_templates(self) -> dict[str, Any]:
        name = self.params.metric_templates_configmap
        if not name:
            return {}
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from canarylab.rollout.prometheus import configmap_templates

        try:
            found = client.CoreV1Api(self.kube).read_namespaced_config_map(
                name, self.params.namespace
            )
        except ApiException as err:
            raise RolloutError(
                f"cannot read the metric templates' ConfigMap {self.params.namespace}/{name}: "
                f"{err.status} {err.reason}"
            ) from None
        return configmap_templates(dict(found.data or {}))

    def _lease(self) -> contextlib.AbstractContextManager[Any]:
        if self.params.lease is None:
            return contextlib.nullcontext()
        return self.rollout.lease(duration_s=float(self.params.lease))

    def finish(self, outcome: Outcome | str, reason: Reason | None = None) -> None:
        health = self.feed.stop() if self.feed is not None else None
        totals = self.totals()
        self.recorder.update_metadata(
            outcome=str(outcome),
            reason=None if reason is None else str(reason),
            exit_code=int(ExitCode.for_outcome(str(outcome))),
            probe_error=None if health is None else health.error,
            finished_at=now(),
            totals=totals,
        )
        self.summary().to_csv(self.out / "summary.csv", index=False)
        (self.out / "totals.json").write_text(json.dumps(totals) + "\n")
        self.recorder.close()

    def summary(self) -> pd.DataFrame:
        """One row per step of this run: requests by version, share, error rates, p99s, verdict."""
        return summary_table(self.rows)

    def totals(self) -> dict[str, int]:
        return self.feed.totals() if self.feed is not None else {"requests": 0, "failed": 0}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
