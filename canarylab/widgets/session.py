"""What ``notebooks/step-through.ipynb`` (and ``canarylab dashboard``) runs.

A :class:`StepThrough` connects (explicit kubeconfig/context, else ``$KUBECONFIG``,
else the running sandbox), optionally deploys the sample parent app, opens a record,
starts the probe on the gateway in the background, and shows the control panel and
the live chart. Everything goes into the record: the panel's actions and the status
changes (through the ``Rollout``'s recorder), and every probe second (through
:class:`SampleTee`, which also feeds the chart, so the chart costs no polling).

The step methods (:meth:`create`, :meth:`shift`, :meth:`replace`, :meth:`delete`)
press the panel's own buttons and wait for the cluster, so a headless run walks
the same code path a user's clicks do.

Each second the session's :class:`GateWatch` judges the runbook's gates on the probe's
traffic at the applied weight (every weight change starts a new step, as a plan step
would; the unversioned-failure baseline is measured before the canary's first
traffic), and the panel and the chart show each gate's running state. Each change of a
gate's state is recorded as a ``verdict`` event. The verdicts are advice: this module
must never decide rollout policy (nothing here acts on a verdict); it never starts a
sandbox.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from canarylab import gates as g
from canarylab.errors import CanarylabError
from canarylab.record.events import Kind, verdict_fields
from canarylab.widgets.live import LiveChart
from canarylab.widgets.panel import ControlPanel, kube_last_event


class StepError(CanarylabError):
    """A step of the walk-through failed; the panel shows the API's reason."""


CHOOSABLE = {
    "namespace": "CANARYLAB_NAMESPACE",
    "parent": "CANARYLAB_PARENT",
    "name": "CANARYLAB_NAME",
}
"""What a dashboard URL may choose (``?namespace=demo&parent=hello``), and the variable
``canarylab dashboard`` sets for each when the URL does not say."""

_KUBE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def requested_canary(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The canary a dashboard page is for: the page URL's query (voila hands each kernel
    its page's ``QUERY_STRING``), else the ``CANARYLAB_*`` variables of :data:`CHOOSABLE`.

    So one dashboard server serves many canaries, one kernel per page. A value that is
    not a Kubernetes name is refused (it also names the record's directory); other
    query keys are ignored.
    """
    from urllib.parse import parse_qs

    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=False)
    chosen: dict[str, str] = {}
    for key, variable in CHOOSABLE.items():
        value = query[key][-1] if key in query else environ.get(variable, "")
        if not value:
            continue
        if not _KUBE_NAME.fullmatch(value):
            raise StepError(
                f"{key} {value!r} is not a Kubernetes name (lower-case letters, digits, '-', '.')"
            )
        chosen[key] = value
    return chosen


def canary_record_dir(base: str, namespace: str, canary: str) -> str:
    """Where a dashboard page records: ``<base>/<namespace>/<canary>``, one per canary."""
    return str(Path(base) / namespace / canary)


@dataclass(frozen=True)
class StepThroughSettings:
    """The step-through notebook's parameters."""

    namespace: str = "demo"
    parent: str = "hello"
    """The parent Deployment."""
    name: str | None = None
    """The CanaryDeployment (default: the parent's name)."""
    image: str = "canarylab/demo:v2"
    version: str = "v2"
    replicas: int = 2
    canary_env: Mapping[str, str] = field(default_factory=lambda: {"DEMO_MESSAGE": "hello Hongbo"})
    kubeconfig: str | None = None
    """None: ``$KUBECONFIG``, else the running sandbox."""
    context: str | None = None
    deploy_sample_app: bool = True
    """Create the sample "hello world" parent (Deployment, Service, ApisixRoute) when missing."""
    probe_target: str | None = None
    """Gateway URL; None: the cluster's gateway with the route's Host header
    (``canarylab.kube.Target.probe_target``)."""
    probe_rate: float = 100.0
    probe_headers: Mapping[str, str] = field(default_factory=dict)
    record_dir: str = "out/step-through/record"
    window_s: int = 300
    """Seconds the live chart shows."""
    gates: Mapping[str, Any] = field(
        default_factory=lambda: {
            "max_error_rate": {"limit": 0.05, "min_requests": 50},
            "error_rate_comparison": {"min_difference": 0.005, "min_requests": 100},
        }
    )
    """Gates as data (``canarylab.gates.from_spec``; the traffic-share gate is added), judged
    at each weight; ``{"traffic_share": False}`` alone judges nothing."""
    alpha: float = 0.01
    """False-alarm level of one weight's gates together (split evenly among them)."""


class GateWatch:
    """The gates' running verdicts during a hand-driven rollout (advice, never an action).

    :meth:`look` is called once a second with the probe's traffic and the applied weight.
    A new weight starts a new step: its gates judge the traffic from that moment, as the
    runner's do. Before the canary's first traffic it measures the baseline of failures
    without a version. Pure apart from the clock value it is handed.
    """

    def __init__(self, gates: Sequence[g.Gate], canary: str, original: str | None = None) -> None:
        self.gates = tuple(gates)
        self.canary = canary
        self.original = original
        self.weight: int | None = None
        self.since: pd.Timestamp | None = None
        """When the applied weight last changed."""
        self.step = -1
        """Weight changes seen so far, less one: the ``step`` of recorded verdicts."""
        self.baseline: g.Baseline | None = None
        self.looks = 0
        self._shown: dict[str, str] = {}

    def look(self, traffic: g.Traffic, applied: int | None, now: pd.Timestamp) -> list[g.Verdict]:
        """The gates' verdicts now; none while the canary has no weight.

        ``applied`` None (the route did not say) keeps the weight it had.
        """
        if applied is not None and applied != self.weight:
            self.weight, self.since = applied, now
            self.step += 1
            self.looks = 0
            self._shown.clear()
            if applied and self.baseline is None:
                self.baseline = g.Baseline.from_traffic(traffic, now)
        if not self.weight:
            return []
        gates = self.gates
        if self.weight >= 100:  # at 100% only the canary's own limits mean anything
            gates = tuple(gate for gate in gates if not g.compares_original(gate))
        window = g.Window(
            canary=self.canary,
            original=self.original,
            since=self.since,
            weight=self.weight,
            baseline=self.baseline,
        )
        self.looks += 1
        return g.judge_all(gates, traffic, window)

    def changed(self, verdicts: Sequence[g.Verdict]) -> list[g.Verdict]:
        """The verdicts whose outcome differs from the last look's (what gets recorded)."""
        out = [v for v in verdicts if self._shown.get(v.gate) != v.outcome]
        self._shown.update((v.gate, v.outcome) for v in out)
        return out

    def heading(self, now: pd.Timestamp) -> str:
        if not self.weight or self.since is None:
            return "gates: the canary has no weight yet; they judge once it takes traffic"
        held = max(0.0, (now - self.since).total_seconds())
        return (
            f"gates at weight {self.weight}% for {held:.0f} s "
            "(advice: the panel never acts on a verdict)"
        )


class SampleTee:
    """A recorder that also hands every probe second to a callback (the live chart)."""

    def __init__(self, recorder: Any, on_samples: Callable[[Any], object]) -> None:
        self._recorder = recorder
        self._on_samples = on_samples

    def samples(self, frame: Any) -> None:
        self._recorder.samples(frame)
        try:
            self._on_samples(frame)
        except Exception as err:  # the chart must never break the record
            self._recorder.event(Kind.CHART, message=f"live chart rejected samples: {err}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)


class StepThrough:
    """One interactive session on one CanaryDeployment; see the module docstring."""

    def __init__(self, settings: StepThroughSettings) -> None:
        from canarylab import kube
        from canarylab.record import Recorder
        from canarylab.rollout import Rollout, sample_app
        from canarylab.rollout.traffic import ProbeFeed

        self.settings = s = settings
        self.target = kube.resolve(s.kubeconfig, s.context)
        self.api = self.target.api_client()
        if s.deploy_sample_app:
            sample_app.ensure_apisix_crd(self.api)
            sample_app.deploy(self.api, s.namespace, name=s.parent, version="v1", replicas=2)
            sample_app.wait_parent_ready(self.api, s.namespace, s.parent)
        self.recorder = Recorder(
            s.record_dir,
            {
                "kind": "step-through",
                "namespace": s.namespace,
                "parent": s.parent,
                "name": s.name or s.parent,
                "version": s.version,
                "image": s.image,
                "cluster": self.api.configuration.host,
            },
        )
        self.chart = LiveChart(window_s=s.window_s, title=f"{s.namespace}/{s.name or s.parent}")
        tee = SampleTee(self.recorder, self.chart.window.push_samples)
        self.rollout = Rollout(s.namespace, s.parent, name=s.name, kube=self.api, recorder=tee)
        probe = self.target.probe_target(
            s.probe_target, route=s.parent, namespace=s.namespace, headers=s.probe_headers
        )
        self.feed = ProbeFeed.start(
            probe.url, rate=s.probe_rate, headers=dict(probe.headers), recorder=tee
        )
        self.panel = ControlPanel(
            self.rollout,
            create={
                "version": s.version,
                "image": s.image,
                "replicas": s.replicas,
                "env": dict(s.canary_env),
            },
            last_event=kube_last_event(self.rollout),
            name=f"{s.namespace}/{self.rollout.name}",
        )
        alpha = s.alpha / max(1, len(g.from_spec(s.gates)))
        self.gate_watch = GateWatch(g.from_spec(s.gates, alpha=alpha), s.version)
        self._applied: float | None = None
        self.panel.watch(1.0)
        self.chart.start(weights=self._weights, judge=self._judge)
        self.closed = False

    def _weights(self) -> tuple[float | None, float | None]:
        snap = self.rollout.status()
        if not snap.exists:
            self._applied = 0.0
            return 0.0, 0.0
        self._applied = None if snap.applied_weight is None else float(snap.applied_weight)
        return float(snap.desired_weight), self._applied

    def _judge(self) -> list[g.Verdict]:
        """One look of the gates (the chart's thread, once a second): show and record."""
        now = pd.Timestamp.now(tz="UTC")
        applied = None if self._applied is None else int(self._applied)
        watch = self.gate_watch
        verdicts = watch.look(self.feed.traffic(), applied, now)
        for v in watch.changed(verdicts):
            self.recorder.event(Kind.VERDICT, **verdict_fields(watch.step, v, watch.looks))
        heading = watch.heading(now)
        health = self.feed.health()
        if not health.ok:
            heading += f" · probe: {health.describe()}"
        self.panel.show_gates(verdicts, heading)
        return verdicts

    @property
    def widget(self) -> w.Widget:
        """Panel above chart: what the notebook displays."""
        return w.VBox([self.panel.widget, self.chart.view])  # gates show in the panel

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- the walk: the panel's buttons, then wait for the cluster ------------------------

    def _press(self, action: Callable[[], bool], what: str) -> None:
        if not action():
            raise StepError(f"{what} failed: {self.panel.error_html.value}")

    def _until(self, done: Callable[[Any], bool], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            snap = self.rollout.status()
            if done(snap):
                self.panel.refresh()
                return snap
            if time.monotonic() > deadline:
                raise StepError(
                    f"timed out after {timeout:.0f}s waiting for {what}: {snap.brief()}"
                )
            time.sleep(0.2)

    def create(self, timeout: float = 120) -> Any:
        """Press create; wait until the canary's pods are ready."""
        self._press(lambda: self.panel.act("create"), "create")
        return self._until(lambda s: s.ready and s.observed, "the canary to be ready", timeout)

    def shift(self, weight: int, timeout: float = 60) -> Any:
        """Move the slider to ``weight``; wait until the route carries it."""
        self.panel.slider.value = weight  # exactly what a user's release does
        if self.panel.error_html.value:
            raise StepError(f"weight {weight} failed: {self.panel.error_html.value}")
        return self._until(
            lambda s: s.desired_weight == weight and s.weight_applied,
            f"the route to carry weight {weight}",
            timeout,
        )

    def replace(self, timeout: float = 300) -> Any:
        """Press replace; wait for phase Replaced."""
        self._press(lambda: self.panel.act("replace"), "replace")
        return self._until(lambda s: s.phase == "Replaced", "phase Replaced", timeout)

    def delete(self, timeout: float = 120) -> Any:
        """Press delete; wait until the CanaryDeployment is gone."""
        self._press(lambda: self.panel.act("delete"), "delete")
        return self._until(lambda s: not s.exists, "the CanaryDeployment to be gone", timeout)

    def close(self, outcome: str | None = None) -> Path:
        """Stop the probe, the chart and the panel; finish the record; returns its path."""
        if not self.closed:
            self.closed = True
            self.chart.stop()
            self.panel.stop()
            self.feed.stop()
            if outcome:
                self.recorder.update_metadata(outcome=outcome)
            self.recorder.close()
        return Path(self.settings.record_dir)
