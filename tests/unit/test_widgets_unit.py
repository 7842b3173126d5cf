"""The control panel and the live chart's window with a fake rollout (pure logic only).

The same behaviour against the real sandbox is in tests/integration/test_widgets.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from canarylab.widgets import ControlPanel, LiveChart, LiveWindow
from canarylab.widgets.panel import describe, status_line


@dataclass
class FakeRollout:
    weight: int | None = None
    fail: str | None = None
    calls: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any] | None:
        if self.weight is None:
            return None
        return {
            "phase": "Progressing",
            "desired_weight": self.weight,
            "applied_weight": self.weight,
        }

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if self.fail == what:
            raise RuntimeError(f"admission webhook denied {what}")

    def create_canary(self, **kwargs: Any) -> None:
        self._maybe_fail("create")
        self.weight = kwargs.get("weight", 0)

    def set_weight(self, weight: int, *, wait: bool = True) -> None:
        self._maybe_fail("weight")
        self.weight = weight

    def replace(self, *, wait: bool = True) -> None:
        self._maybe_fail("replace")

    def abort(self) -> None:
        self._maybe_fail("abort")
        self.weight = None

    def delete(self, *, wait: bool = True) -> None:
        self._maybe_fail("delete")
        self.weight = None


def test_slider_release_sends_one_patch() -> None:
    fake = FakeRollout()
    panel = ControlPanel(fake, create={"version": "v2"})
    assert panel.slider.continuous_update is False
    assert panel.slider.disabled  # nothing to weigh before create
    panel.buttons["create"].click()
    assert fake.weight == 0
    panel.slider.value = 30
    assert fake.calls == ["create", "weight"]
    assert fake.weight == 30
    assert "desired 30%" in panel.status_html.value


def test_refused_patch_shows_the_error_and_restores_the_slider() -> None:
    fake = FakeRollout(weight=10, fail="weight")
    panel = ControlPanel(fake)
    assert panel.slider.value == 10
    panel.slider.value = 60
    assert fake.weight == 10
    assert panel.slider.value == 10
    assert "admission webhook denied weight" in panel.error_html.value
    assert not any(b.disabled for b in panel.buttons.values())


def test_delete_clears_the_panel() -> None:
    fake = FakeRollout(weight=40)
    panel = ControlPanel(fake)
    panel.buttons["delete"].click()
    assert panel.slider.value == 0
    assert panel.slider.disabled
    assert "no canary" in panel.status_html.value


def test_status_line_reads_dataclasses_and_mappings() -> None:
    @dataclass(frozen=True)
    class Snap:
        phase: str
        desired_weight: int
        applied_weight: int
        ready_replicas: int
        replicas: int

    line = status_line(describe(Snap("Progressing", 25, 5, 1, 2), "Scaled up canary"))
    assert line == (
        "phase Progressing · weight desired 25%, applied 5% · ready 1/2 · last event: Scaled up canary"
    )


def _rows(second: pd.Timestamp, canary: int) -> list[dict[str, Any]]:
    return [
        {
            "second": second,
            "version": v,
            "requests": n,
            "ok": n,
            "http_errors": 0,
            "timeouts": 0,
            "conn_errors": 0,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": 3.0,
        }
        for v, n in (("v1", 100 - canary), ("v2", canary))
    ]


def test_window_is_bounded() -> None:
    window = LiveWindow(window_s=60)
    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    for i in range(400):
        window.push_samples(_rows(t0 + pd.Timedelta(seconds=i), 10))
    samples, _ = window.snapshot()
    assert samples["second"].nunique() <= 61
    assert window.pushed == 800


def test_window_rejects_foreign_rows() -> None:
    with pytest.raises(ValueError, match="p99_ms"):
        LiveWindow().push_samples({"second": pd.Timestamp.now(tz="UTC"), "version": "v1"})


def test_chart_draws_share_per_version() -> None:
    chart = LiveChart(window_s=30)
    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    for i in range(10):
        chart.window.push_samples(_rows(t0 + pd.Timedelta(seconds=i), 25))
    chart.window.push_weight(t0, 25, 25)
    chart.refresh()
    assert chart.versions == ["v1", "v2"]
    assert chart.points("v2") == 10
    share = chart.figure.data[chart._traces_for("v2")[0]].y
    assert all(abs(s - 25) < 1e-9 for s in share)


# -- the gates' running state ---------------------------------------------------------


def _traffic(seconds: int, canary_errors: int = 0) -> Any:
    from canarylab import gates as g

    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    rows = [
        _rows(t0 + pd.Timedelta(seconds=i), 25 if i >= 10 else 0)[j]
        for i in range(seconds)
        for j in (0, 1)
        if i >= 10 or j == 0
    ]
    frame = pd.DataFrame(rows)
    if canary_errors:
        canary = frame["version"] == "v2"
        frame.loc[canary, "http_errors"] = canary_errors
        frame.loc[canary, "ok"] = frame.loc[canary, "requests"] - canary_errors
    return g.Traffic(frame)


def test_gate_watch_starts_a_step_at_each_weight_and_measures_the_baseline() -> None:
    from canarylab import gates as g
    from canarylab.widgets.session import GateWatch

    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    watch = GateWatch(g.from_spec({"max_error_rate": 0.05}), "v2")
    assert watch.look(_traffic(10), 0, t0 + pd.Timedelta(seconds=10)) == []
    assert "no weight yet" in watch.heading(t0)
    at = t0 + pd.Timedelta(seconds=10)
    first = watch.look(_traffic(12), 25, at)
    assert watch.baseline is not None
    assert watch.baseline.requests == 1000  # the 10 s before the canary's traffic
    assert {v.gate for v in first} == {"traffic-share", "max-error-rate"}
    assert [v.gate for v in watch.changed(first)] == ["traffic-share", "max-error-rate"]
    assert watch.changed(first) == []  # recorded once, until a state changes
    later = watch.look(_traffic(60, canary_errors=10), None, t0 + pd.Timedelta(seconds=60))
    assert watch.weight == 25  # an unknown applied weight keeps the step
    failed = {v.gate: v.outcome for v in later}
    assert failed["max-error-rate"] == "fail"
    assert "at weight 25% for 50 s" in watch.heading(t0 + pd.Timedelta(seconds=60))
    step = watch.step
    watch.look(_traffic(61), 100, t0 + pd.Timedelta(seconds=61))
    assert watch.step == step + 1


def test_panel_and_chart_show_each_gate_state() -> None:
    from canarylab import gates as g

    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    window = g.Window("v2", "v1", since=t0 + pd.Timedelta(seconds=10), weight=25)
    gates = g.from_spec({"max_error_rate": 0.05, "error_rate_comparison": True})
    verdicts = g.judge_all(gates, _traffic(60, canary_errors=10), window)
    panel = ControlPanel(FakeRollout(weight=25))
    panel.show_gates(verdicts, "gates at weight 25%")
    text = panel.gates_html.value
    assert "gates at weight 25%" in text
    assert text.index("max-error-rate") < text.index("traffic-share")  # failing first
    assert "fails" in text
    assert "canary 500/1,250 failed" in text
    assert "e-value" in text
    chart = LiveChart(window_s=30, title="demo/hello")
    chart.show_gates(verdicts)
    assert "max-error-rate fails" in chart.figure.layout.title.text
    assert "traffic-share passes" in chart.figure.layout.title.text
    assert chart.gates_html.value.count("<tr>") == 3
    chart.show_gates([])
    assert chart.figure.layout.title.text == "demo/hello"


def test_the_dashboard_url_chooses_the_canary() -> None:
    from canarylab.widgets.session import StepError, canary_record_dir, requested_canary

    env = {"CANARYLAB_NAMESPACE": "demo", "CANARYLAB_PARENT": "hello"}
    assert requested_canary(env) == {"namespace": "demo", "parent": "hello"}
    page = {**env, "QUERY_STRING": "namespace=shop&parent=cart&name=cart-v2&theme=dark"}
    assert requested_canary(page) == {"namespace": "shop", "parent": "cart", "name": "cart-v2"}
    # a key the URL leaves out falls back to the server's choice
    assert requested_canary({**env, "QUERY_STRING": "parent=cart"}) == {
        "namespace": "demo",
        "parent": "cart",
    }
    assert requested_canary({}) == {}
    for bad in ("parent=../../etc", "namespace=Shop", "parent=a%2Fb", "name=-x"):
        with pytest.raises(StepError, match="is not a Kubernetes name"):
            requested_canary({"QUERY_STRING": bad})
    assert canary_record_dir("/r", "shop", "cart") == "/r/shop/cart"
