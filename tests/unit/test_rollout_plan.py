"""Plans, resume points, summaries and the plan runner's order of actions (no cluster)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from canarylab import gates as g
from canarylab.rollout import (
    Canary,
    Clock,
    GateFailed,
    PlanError,
    plan_from,
    resume_point,
    run_plan,
    step_summary,
    summary_table,
)
from canarylab.rollout.status import RolloutStatus, absent, parse

T0 = pd.Timestamp("2026-11-27T12:00:00Z")


def test_plan_from_weights_and_mappings() -> None:
    plan = plan_from(
        [5, {"weight": 50, "hold": 2, "gates": {}}, 100], hold_s=10, gates={"max_error_rate": 0.1}
    )
    assert [s.weight for s in plan.steps] == [5, 50, 100]
    assert [s.hold_s for s in plan.steps] == [10, 2, 10]
    assert plan.steps[0].gates == (g.MaxErrorRate(0.1),)
    assert plan.steps[1].gates == ()
    assert "step 1: weight 5%, hold 10s, gates: max-error-rate" in plan.describe()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([5, 5], "weights must increase"),
        ([0], "from 1 to 100"),
        ([101], "from 1 to 100"),
        (["ten"], "from 1 to 100"),
        ([{"weight": 5, "hold": -1}], "hold must be"),
    ],
)
def test_bad_plans_say_what_is_wrong(steps: list[Any], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_from(steps)


def cd(
    weight: int = 0, phase: str = "Serving", replace: bool = False, **status: Any
) -> RolloutStatus:
    return parse(
        {
            "metadata": {"name": "hello", "generation": 2},
            "spec": {"version": "v2", "weight": weight, "replace": replace, "replicas": 2},
            "status": {"phase": phase, "observedGeneration": 2, **status},
        }
    )


def test_resume_points() -> None:
    plan = plan_from([5, 25, 50, 100])
    assert resume_point(plan, absent("hello")).create
    assert resume_point(plan, cd(0)).first_step == 0
    assert resume_point(plan, cd(25)).first_step == 1  # the interrupted step is held again
    assert resume_point(plan, cd(30)).first_step == 2
    assert resume_point(plan, cd(100)).first_step == 3
    r = resume_point(plan, cd(100, phase="Replacing", replace=True))
    assert (r.create, r.first_step, r.promoting, r.replaced) == (False, 4, True, False)
    assert resume_point(plan, cd(100, phase="Replaced", replace=True)).replaced


def test_status_parse() -> None:
    s = cd(
        5,
        weights={"parent": 95, "canary": 5},
        canary={"readyReplicas": 2, "replicas": 2},
        conditions=[
            {"type": "Degraded", "status": "True", "reason": "RouteNotFound", "message": "no route"}
        ],
    )
    assert s.weight_applied
    assert s.ready
    assert s.problem == "RouteNotFound: no route"
    assert "weight 5 (applied 5)" in s.brief()


def frame(rows: list[tuple[int, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "second": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
            "version": [r[1] for r in rows],
            "requests": [r[2] for r in rows],
            "ok": [r[2] - r[3] for r in rows],
            "http_errors": [r[3] for r in rows],
            "timeouts": 0,
            "conn_errors": 0,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": 3.0,
        }
    )


def test_step_summary_counts_only_the_step() -> None:
    traffic = g.Traffic(frame([(0, "v1", 100, 0), (5, "v1", 90, 0), (5, "v2", 10, 1)]))
    window = g.Window("v2", since=T0 + pd.Timedelta(seconds=5))
    v = g.Verdict("max-error-rate", "pass", "ok")
    row = step_summary(0, 10, traffic, window, [v])
    assert row["requests"] == {"v1": 90, "v2": 10}
    assert row["canary_share"] == pytest.approx(0.1)
    assert row["canary_error_rate"] == pytest.approx(0.1)
    assert row["original_error_rate"] == 0.0
    assert row["verdict"] == "pass"
    table = summary_table([row])
    assert list(table.columns[:4]) == ["step", "weight", "requests v1", "requests v2"]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.events.append({"kind": kind, **fields})
        return fields

    def action(self, what: str, result: str, who: str | None = None, **details: Any) -> None:
        self.event("action", what=what, result=result)


class FakeRollout:
    """Just enough of Rollout to check the runner's order of actions."""

    def __init__(self, status: RolloutStatus | None = None) -> None:
        self.namespace, self.name = "ns", "hello"
        self.recorder = FakeRecorder()
        self.calls: list[str] = []
        self._status = status or absent("hello")

    def status(self) -> RolloutStatus:
        return self._status

    def create_canary(self, **kw: Any) -> None:
        self.calls.append("create")
        self._status = cd(0)

    def wait_ready(self, timeout: float) -> None:
        self.calls.append("ready")

    def set_weight(self, w: int, timeout: float = 0) -> None:
        self.calls.append(f"weight {w}")
        self._status = cd(w)

    def replace(self, timeout: float) -> None:
        self.calls.append("replace")

    def delete(self, timeout: float) -> None:
        self.calls.append("delete")

    def abort(self) -> None:
        self.calls.append("abort")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> Clock:
        return Clock(
            now=lambda: T0 + pd.Timedelta(seconds=self.t),
            sleep=self.sleep,
            monotonic=lambda: self.t,
        )

    def sleep(self, s: float) -> None:
        self.t += s


class Steady:
    """Traffic at 100 rps split by the rollout's current weight; canary errors at ``bad``."""

    def __init__(self, rollout: FakeRollout, clock: FakeClock, bad: float = 0.0) -> None:
        self.rows: list[tuple[int, str, int, int]] = []
        self.rollout, self.clock, self.bad = rollout, clock, bad
        self.last = 0

    def traffic(self) -> g.Traffic:
        while self.last < int(self.clock.t):
            w = self.rollout.status().desired_weight
            self.rows += [(self.last, "v1", 100 - w, 0), (self.last, "v2", w, round(w * self.bad))]
            self.last += 1
        return g.Traffic(frame(self.rows))


def test_runner_walks_the_plan_and_promotes() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from(
        [10, 50], hold_s=5, gates={"max_error_rate": {"limit": 0.05, "min_requests": 20}}
    )
    out = run_plan(ro, plan, Canary("v2", image="x:v2"), Steady(ro, clk), clock=clk.clock())  # type: ignore[arg-type]
    assert ro.calls == ["create", "ready", "weight 10", "weight 50", "replace", "delete"]
    assert [r.summary["verdict"] for r in out.steps] == ["pass", "pass"]
    assert out.promoted


def test_runner_rolls_back_then_raises_naming_the_gate() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from([10, 50], hold_s=30, gates={"error_rate_comparison": {"min_requests": 30}})
    with pytest.raises(
        GateFailed, match=r"gate error-rate-comparison failed at step 1 \(weight 10%\): .*p-value"
    ) as err:
        run_plan(ro, plan, Canary("v2", image="x:v2"), Steady(ro, clk, bad=0.2), clock=clk.clock())  # type: ignore[arg-type]
    assert ro.calls == ["create", "ready", "weight 10", "abort"]
    assert err.value.rolled_back
    assert "comparisons: error-rate-comparison fail, p-value" in str(err.value)
    assert err.value.summary["verdict"] == "fail"
    assert err.value.summary["weight"] == 10
    assert clk.t < 30  # failed during the hold, as soon as the numbers were in
    kinds = [e["kind"] for e in ro.recorder.events]
    assert "verdict" in kinds


def test_runner_resumes_without_recreating() -> None:
    ro, clk = FakeRollout(cd(50)), FakeClock()
    run_plan(
        ro, plan_from([10, 50, 100], hold_s=1), Canary("v2", image="x:v2"), None, clock=clk.clock()
    )  # type: ignore[arg-type]
    assert ro.calls == ["ready", "weight 50", "weight 100", "replace", "delete"]
    assert ro.recorder.events[0]["state"] == "resumed"


def test_runner_refuses_another_version() -> None:
    ro = FakeRollout(cd(50))
    with pytest.raises(Exception, match="rolls out version 'v2', not 'v3'"):
        run_plan(ro, plan_from([10]), Canary("v3", image="x:v3"))  # type: ignore[arg-type]


def test_comparisons_are_not_judged_at_100_percent() -> None:
    ro, clk = FakeRollout(), FakeClock()
    gates = {
        "max_error_rate": {"limit": 0.5, "min_requests": 1},
        "error_rate_comparison": {"min_requests": 1},
    }
    out = run_plan(
        ro,
        plan_from([50, 100], hold_s=3, gates=gates),
        Canary("v2", image="x"),
        Steady(ro, clk),
        clock=clk.clock(),
    )  # type: ignore[arg-type]
    assert [v.gate for v in out.steps[0].verdicts] == ["max-error-rate", "error-rate-comparison"]
    assert [v.gate for v in out.steps[1].verdicts] == ["max-error-rate"]


def test_canary_template_from_the_parent() -> None:
    from canarylab.rollout.manifest import template_from_parent

    parent = {
        "metadata": {"labels": {"app": "hello"}, "creationTimestamp": None},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "demo:v1",
                    "env": [{"name": "DEMO_MESSAGE", "value": "hi"}],
                }
            ]
        },
    }
    t = template_from_parent(
        parent, "demo:v2", {"DEMO_MESSAGE": "hello Hongbo", "DEMO_ERROR_RATE": "0.2"}
    )
    assert t["metadata"] == {"labels": {"app": "hello"}}
    (c,) = t["spec"]["containers"]
    assert c["image"] == "demo:v2"
    assert c["env"] == [
        {"name": "DEMO_MESSAGE", "value": "hello Hongbo"},
        {"name": "DEMO_ERROR_RATE", "value": "0.2"},
    ]
    assert parent["spec"]["containers"][0]["image"] == "demo:v1"  # the parent is not touched
