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
    RolloutStopped,
    plan_from,
    resume_point,
    run_plan,
    step_summary,
    summary_table,
)
from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.status import RolloutStatus, absent, parse

T0 = pd.Timestamp("2026-11-27T12:00:00Z")


def test_plan_from_weights_and_mappings() -> None:
    plan = plan_from(
        [5, {"weight": 50, "hold": 2, "gates": {}}, 100], hold_s=10, gates={"max_error_rate": 0.1}
    )
    assert [s.weight for s in plan.steps] == [5, 50, 100]
    assert [s.hold_s for s in plan.steps] == [10, 2, 10]
    assert plan.steps[0].gates == (g.TrafficShare(), g.MaxErrorRate(0.1))
    assert plan.steps[1].gates == (g.TrafficShare(),)  # on unless a spec turns it off
    assert [s.hold_limit_s for s in plan.steps] == [70, 62, 70]
    assert plan.steps[0].on_insufficient == "fail"
    assert (
        "step 1: weight 5%, hold 10s (up to 70s while gates collect, then fail), "
        "gates: traffic-share, max-error-rate"
    ) in plan.describe()


def test_plan_from_splits_alpha_over_steps_and_gates() -> None:
    plan = plan_from([10, 50], gates={"max_error_rate": 0.1}, alpha=0.01)
    # 2 steps x 2 gates: each pair gets a quarter, so the rollout keeps 1%
    assert [gate.alpha for step in plan.steps for gate in step.gates] == [0.0025] * 4
    own = plan_from([10], gates={"max_error_rate": {"limit": 0.1, "alpha": 0.05}}, alpha=0.01)
    assert [gate.alpha for gate in own.steps[0].gates] == [0.005, 0.05]


def test_comparisons_are_charged_once_for_the_whole_run() -> None:
    spec = {"max_error_rate": 0.1, "error_rate_comparison": True}
    plan = plan_from([10, 50], gates=spec, alpha=0.01)
    levels = [(gate.name, gate.alpha) for gate in plan.steps[0].gates]
    assert levels == [
        ("traffic-share", pytest.approx(0.0005)),  # 20% of 1% over 2 steps x 2 gates
        ("max-error-rate", pytest.approx(0.0005)),
        ("error-rate-comparison", pytest.approx(0.008)),  # 80%, once for the whole run
    ]


def test_a_resumed_run_narrows_the_comparisons_per_step() -> None:
    """No baseline on a resume: each step's comparison is a new test, so it gets a part."""
    ro, clk = FakeRollout(cd(50)), FakeClock()
    gates = {"traffic_share": False, "error_rate_comparison": {"min_requests": 1}}
    plan = plan_from([10, 50, 100], hold_s=2, gates=gates, alpha=0.01)
    out = run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk), clock=clk.clock())  # type: ignore[arg-type]
    (verdict,) = out.steps[0].verdicts  # step 2 of 3: two steps left to judge
    # the comparison spends part of its level on attributing unversioned failures
    assert verdict.numbers["alpha"] == pytest.approx(0.01 / 2 * (1 - g.ATTRIBUTION_SHARE))


def test_plan_from_max_hold_and_opt_out() -> None:
    plan = plan_from(
        [10, {"weight": 50, "max_hold": 9, "on_insufficient": "pass"}], hold_s=5, max_hold_s=20
    )
    assert [(s.hold_limit_s, s.on_insufficient) for s in plan.steps] == [(20, "fail"), (9, "pass")]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([5, 5], "weights must increase"),
        ([0], "from 1 to 100"),
        ([101], "from 1 to 100"),
        (["ten"], "from 1 to 100"),
        ([{"weight": 5, "hold": -1}], "hold must be"),
        ([{"weight": 5, "hold": 10, "max_hold": 5}], "max_hold .* at least hold"),
        ([{"weight": 5, "on_insufficient": "ignore"}], "on_insufficient must be"),
        ([{"weight": 5, "hodl": 5}], "unknown field"),
        ([{"weight": 5, "gates": {"max_eror_rate": 1}}], "unknown gate 'max_eror_rate'"),
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


def frame(rows: list[tuple[int, str, int, int]], timeouts: list[int] | None = None) -> pd.DataFrame:
    """Per-second samples; ``timeouts[i]`` of row i's requests timed out (no response)."""
    lost = timeouts or [0] * len(rows)
    return pd.DataFrame(
        {
            "second": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
            "version": [r[1] for r in rows],
            "requests": [r[2] for r in rows],
            "ok": [r[2] - r[3] - t for r, t in zip(rows, lost, strict=True)],
            "http_errors": [r[3] for r in rows],
            "timeouts": lost,
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
    """Traffic at 100 rps split by the rollout's current weight; canary errors at ``bad``.

    ``hang``: the canary answers nothing (its requests time out, without a version);
    ``label``: the version the canary's answers carry (``v1`` hides it as the original).
    """

    def __init__(
        self,
        rollout: FakeRollout,
        clock: FakeClock,
        bad: float = 0.0,
        hang: bool = False,
        label: str = "v2",
        late_s: int = 0,
    ) -> None:
        self.rows: list[tuple[int, str, int, int]] = []
        self.lost: list[int] = []
        self.rollout, self.clock, self.bad = rollout, clock, bad
        self.hang, self.label = hang, label
        self.late_s = late_s
        """The gateway sends the canary nothing for its first ``late_s`` seconds of traffic."""
        self.last = 0
        self.first_weight: int | None = None
        self.alive = True

    def traffic(self) -> g.Traffic:
        while self.last < int(self.clock.t):
            w = self.rollout.status().desired_weight
            if w and self.first_weight is None:
                self.first_weight = self.last
            if self.first_weight is not None and self.last < self.first_weight + self.late_s:
                w = 0
            if self.hang:
                self.rows += [(self.last, "v1", 100 - w, 0), (self.last, "unknown", w, 0)]
                self.lost += [0, w]
            else:
                self.rows += [
                    (self.last, "v1", 100 - w, 0),
                    (self.last, self.label, w, round(w * self.bad)),
                ]
                self.lost += [0, 0]
            self.last += 1
        return g.Traffic(frame(self.rows, self.lost))


class Watched(Steady):
    """A Steady source with a probe health that can die."""

    def health(self) -> Any:
        from canarylab.rollout.traffic import ProbeHealth

        return ProbeHealth("http://gw/", self.alive, None, 0.0, 10.0)


def kinds(ro: FakeRollout, kind: str) -> list[dict[str, Any]]:
    return [e for e in ro.recorder.events if e["kind"] == kind]


def finished(ro: FakeRollout) -> dict[str, Any]:
    runs = [e for e in kinds(ro, "run") if e.get("state") == "finished"]
    assert len(runs) == 1
    return runs[0]


def test_runner_walks_the_plan_and_promotes() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from(
        [10, 50], hold_s=5, gates={"max_error_rate": {"limit": 0.05, "min_requests": 20}}
    )
    out = run_plan(ro, plan, Canary("v2", image="x:v2"), Steady(ro, clk), clock=clk.clock())  # type: ignore[arg-type]
    assert ro.calls == ["create", "ready", "weight 10", "weight 50", "replace", "delete"]
    assert [r.summary["verdict"] for r in out.steps] == ["pass", "pass"]
    assert out.promoted
    assert finished(ro)["outcome"] == "succeeded"
    assert finished(ro)["exit_code"] == 0
    assert kinds(ro, "baseline")[0]["requests"] > 0


def test_runner_rolls_back_then_raises_naming_the_gate() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from([10, 50], hold_s=30, gates={"error_rate_comparison": {"min_requests": 30}})
    with pytest.raises(
        GateFailed,
        match=r"GateFailed at step 1 \(weight 10%\): gate error-rate-comparison failed: .*p-value",
    ) as err:
        run_plan(ro, plan, Canary("v2", image="x:v2"), Steady(ro, clk, bad=0.2), clock=clk.clock())  # type: ignore[arg-type]
    assert ro.calls == ["create", "ready", "weight 10", "abort"]
    assert err.value.rolled_back
    assert err.value.exit_code == 2
    assert "comparisons: error-rate-comparison fail, p-value" in str(err.value)
    assert err.value.summary["verdict"] == "fail"
    assert err.value.summary["weight"] == 10
    assert clk.t < 30  # failed during the hold, as soon as the numbers were in
    assert kinds(ro, "verdict")
    assert finished(ro)["reason"] == "GateFailed"
    assert finished(ro)["outcome"] == "rolled-back"


def test_a_hanging_canary_is_caught_not_promoted() -> None:
    """Timeouts carry no version: beyond the baseline they are the canary's."""
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from([10, 50, 100], hold_s=10, gates={"max_error_rate": {"limit": 0.05}})
    with pytest.raises(RolloutStopped) as err:
        run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk, hang=True), clock=clk.clock())  # type: ignore[arg-type]
    assert "replace" not in ro.calls
    assert ro.calls[-1] == "abort"
    assert err.value.exit_code == 2
    assert err.value.step == 0


def test_a_canary_hidden_as_the_original_fails_on_its_share() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from([25, 100], hold_s=10)
    with pytest.raises(GateFailed) as err:
        run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk, label="v1"), clock=clk.clock())  # type: ignore[arg-type]
    assert err.value.reason == "NoCanaryTraffic"
    assert ro.calls[-1] == "abort"
    assert finished(ro)["reason"] == "NoCanaryTraffic"


def test_a_gateway_slow_to_apply_the_weight_is_waited_for() -> None:
    """The route says 10%, the data plane sends the canary nothing for 8 s, then 10%."""
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from([10, 100], hold_s=10)
    out = run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk, late_s=8), clock=clk.clock())  # type: ignore[arg-type]
    assert out.promoted
    (first, *_) = [e for e in kinds(ro, "step") if e.get("state") == "started"]
    assert 8 <= first["settled_s"] < 12


def test_insufficient_evidence_extends_the_hold_then_fails_closed() -> None:
    ro, clk = FakeRollout(), FakeClock()
    # 100 requests at 10% give the canary ~10/s: 5000 are never reached within 30s
    plan = plan_from(
        [10],
        hold_s=5,
        max_hold_s=30,
        gates={"max_error_rate": {"limit": 0.05, "min_requests": 5000}},
    )
    with pytest.raises(RolloutStopped) as err:
        run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk), clock=clk.clock())  # type: ignore[arg-type]
    assert err.value.reason == "InsufficientEvidence"
    assert "max-error-rate" in str(err.value)
    assert 30 <= clk.t < 34  # + the second or two until the route showed
    assert ro.calls == ["create", "ready", "weight 10", "abort"]
    (ext,) = kinds(ro, "extension")
    assert "max-error-rate" in ext["collecting"]
    assert finished(ro)["exit_code"] == 2


def test_a_step_may_opt_out_of_failing_on_insufficient_evidence() -> None:
    ro, clk = FakeRollout(), FakeClock()
    plan = plan_from(
        [10],
        hold_s=5,
        max_hold_s=8,
        on_insufficient="pass",
        gates={"max_error_rate": {"limit": 0.05, "min_requests": 5000}},
    )
    out = run_plan(ro, plan, Canary("v2", image="x"), Steady(ro, clk), clock=clk.clock())  # type: ignore[arg-type]
    assert out.promoted
    assert out.steps[0].summary["verdict"] == "insufficient"


def test_a_dead_probe_fails_the_step() -> None:
    ro, clk = FakeRollout(), FakeClock()
    source = Watched(ro, clk)
    plan = plan_from([10, 50], hold_s=20)

    def die(step: int, verdicts: list[g.Verdict]) -> None:
        source.alive = False

    with pytest.raises(RolloutStopped) as err:
        run_plan(ro, plan, Canary("v2", image="x"), source, clock=clk.clock(), on_look=die)  # type: ignore[arg-type]
    assert err.value.reason == "ProbeLost"
    assert "the probe of http://gw/ died" in str(err.value)
    assert ro.calls[-1] == "abort"


def test_an_interrupt_rolls_back_first() -> None:
    ro, clk = FakeRollout(), FakeClock()

    def interrupt(step: int, verdicts: list[g.Verdict]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(RolloutStopped) as err:
        run_plan(
            ro,
            plan_from([10], hold_s=5),
            Canary("v2", image="x"),
            Steady(ro, clk),
            clock=clk.clock(),
            on_look=interrupt,
        )  # type: ignore[arg-type]
    assert err.value.reason == "Interrupted"
    assert ro.calls[-1] == "abort"
    assert finished(ro)["outcome"] == "rolled-back"


def test_a_failed_rollback_is_unsafe() -> None:
    ro, clk = FakeRollout(), FakeClock()

    def fail() -> None:
        raise RolloutError("the API server is gone")

    ro.abort = fail  # type: ignore[method-assign]
    with pytest.raises(RolloutStopped) as err:
        run_plan(
            ro,
            plan_from([10], hold_s=5, gates={"max_error_rate": 0.01}),
            Canary("v2", image="x"),
            Steady(ro, clk, bad=0.5),
            clock=clk.clock(),
        )  # type: ignore[arg-type]
    assert err.value.exit_code == 3
    assert "did NOT complete" in str(err.value)
    assert finished(ro)["outcome"] == "failed"


def test_gates_without_a_traffic_source_change_nothing() -> None:
    ro = FakeRollout()
    with pytest.raises(RolloutError, match="no traffic source"):
        run_plan(ro, plan_from([10]), Canary("v2", image="x"))  # type: ignore[arg-type]
    assert ro.calls == []


def test_runner_resumes_without_recreating() -> None:
    ro, clk = FakeRollout(cd(50)), FakeClock()
    run_plan(
        ro,
        plan_from([10, 50, 100], hold_s=1, gates={"traffic_share": False}),
        Canary("v2", image="x:v2"),
        None,
        clock=clk.clock(),
    )  # type: ignore[arg-type]
    assert ro.calls == ["ready", "weight 50", "weight 100", "replace", "delete"]
    assert ro.recorder.events[0]["state"] == "resumed"


def test_runner_refuses_another_version() -> None:
    ro = FakeRollout(cd(50))
    with pytest.raises(Exception, match="rolls out version 'v2', not 'v3'"):
        run_plan(ro, plan_from([10]), Canary("v3", image="x:v3"), Steady(ro, FakeClock()))  # type: ignore[arg-type]


def test_comparisons_are_not_judged_at_100_percent() -> None:
    ro, clk = FakeRollout(), FakeClock()
    gates = {
        "traffic_share": False,
        "max_error_rate": {"limit": 0.5, "min_requests": 1},
        "error_rate_comparison": {"min_requests": 1},
    }
    out = run_plan(
        ro,
        plan_from([50, 100], hold_s=3, gates=gates, on_insufficient="pass", max_hold_s=3),
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
