"""The display frames and figures on synthetic rollouts with known answers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from canarylab.plots import (
    frames,
    latency_distribution,
    report,
    step_bars,
    step_table,
    synthetic,
    timeline,
    verdicts,
)
from canarylab.plots.replay import Replay
from canarylab.plots.replay import load as replay_load


@pytest.fixture(scope="module")
def hour() -> synthetic.SyntheticRollout:
    return synthetic.rollout(duration_s=3600, steps=(5, 25, 50, 100), rps=100, events=300)


def test_share_follows_the_weight_and_sums_to_100(hour: synthetic.SyntheticRollout) -> None:
    data = frames.traffic(hour.samples, max_points=3600)
    assert data.bucket_s == 1
    totals = data.share.sum(axis=1)
    assert ((totals - 100).abs() < 1e-9).all()
    # second step (25%) runs from 900 s to 1800 s
    middle = data.share.loc[hour.start + pd.Timedelta(seconds=900) :].iloc[:900]
    assert abs(middle["v2"].mean() - 25) < 2


def test_decimation_bounds_points_and_keeps_totals(hour: synthetic.SyntheticRollout) -> None:
    data = frames.traffic(hour.samples, max_points=100)
    assert len(data.time) <= 100
    assert data.bucket_s == 36
    total = (data.requests_per_s * data.bucket_s).to_numpy().sum()
    assert total == pytest.approx(hour.samples["requests"].sum())
    assert data.p99_ms.max().max() == pytest.approx(hour.samples["p99_ms"].max())


def test_missing_columns_are_named() -> None:
    with pytest.raises(frames.SampleSchemaError, match="p99_ms"):
        frames.traffic(pd.DataFrame({"second": [], "version": [], "requests": []}))


def test_step_table_matches_the_plan(hour: synthetic.SyntheticRollout) -> None:
    table = step_table(hour.samples, hour.events)
    assert list(table["weight"]) == [5.0, 25.0, 50.0, 100.0]
    assert table["requests"].sum() == hour.samples["requests"].sum()
    for weight, share in zip(table["weight"], table["canary_share"], strict=True):
        assert abs(share - weight) < 1.5


def test_state_at_a_second(hour: synthetic.SyntheticRollout) -> None:
    state = frames.state_at(hour.samples, hour.events, hour.start + pd.Timedelta(seconds=2000))
    assert state["desired_weight"] == 50.0
    assert state["last_action"] == "set weight 50"
    assert state["phase"] == "Progressing"
    share = state["share"]
    assert isinstance(share, dict)
    assert abs(share["v2"] - 50) < 10
    before = frames.state_at(hour.samples, hour.events, hour.start - pd.Timedelta(seconds=5))
    assert math.isnan(float(before["desired_weight"]))  # type: ignore[arg-type]
    assert before["requests"] == 0


def test_figures_build_with_bounded_points(hour: synthetic.SyntheticRollout) -> None:
    fig = timeline(hour.samples, hour.events, max_points=500)
    shares = [t for t in fig.data if t.name in ("v1", "v2") and t.showlegend is not False]
    assert {t.name for t in shares} == {"v1", "v2"}
    assert all(len(t.x) <= 500 for t in fig.data)
    names = {t.name for t in fig.data}
    assert {"desired weight", "applied weight", "operator action"} <= names
    assert len(fig.layout.shapes) == 5  # one line per operator action
    bars = step_bars(step_table(hour.samples, hour.events))
    assert [t.name for t in bars.data][:2] == ["requests v1", "requests v2"]
    lat = latency_distribution(hour.samples)
    assert len(lat.data) == 4


def test_empty_inputs_draw_empty_figures() -> None:
    empty = pd.DataFrame({c: [] for c in frames.SAMPLE_COLUMNS})
    fig = timeline(empty)
    assert len(fig.data) == 2  # only the (empty) weight lines
    assert step_table(empty, frames.empty_events()).empty


# -- the postmortem report on a fabricated gated record -------------------------------

T0 = pd.Timestamp("2026-12-02T12:00:00Z")


def _samples(seconds: range, weight_at: Any, error_at: Any, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in seconds:
        n = int(rng.poisson(100))
        canary = int(rng.binomial(n, weight_at(i) / 100))
        for version, count, rate in (("v1", n - canary, 0.0), ("v2", canary, error_at(i))):
            if count == 0:
                continue
            errors = int(rng.binomial(count, rate))
            rows.append(
                {
                    "second": T0 + pd.Timedelta(seconds=i),
                    "version": version,
                    "requests": count,
                    "ok": count - errors,
                    "http_errors": errors,
                    "timeouts": 0,
                    "conn_errors": 0,
                    "p50_ms": 10.0,
                    "p95_ms": 18.0,
                    "p99_ms": 25.0,
                }
            )
    return pd.DataFrame(rows)


def write_gated_record(path: Path) -> Path:
    """A record like the runner writes: step 1 (5%) extended then passed, step 2 (25%)
    failed on the error-rate gate; a probe stall and a lease lapse on the side."""
    from canarylab import gates as g
    from canarylab.record import Recorder
    from canarylab.record import events as ev
    from canarylab.rollout import step_summary

    samples = _samples(
        range(0, 260),
        weight_at=lambda i: 0 if i < 100 else 5 if i < 200 else 25,
        error_at=lambda i: 0.0 if i < 200 else 0.3,
    )
    traffic = g.Traffic(samples)
    gate = g.MaxErrorRate(limit=0.05, min_requests=50)

    def at(s: float) -> str:
        return (T0 + pd.Timedelta(seconds=s)).isoformat()

    def upto(s: float) -> g.Traffic:
        return g.Traffic(samples[samples["second"] < T0 + pd.Timedelta(seconds=s)])

    meta = {
        "kind": "canary-rollout",
        "namespace": "demo",
        "parent": "hello",
        "name": "hello",
        "version": "v2",
        "reason": None,
        "parameters": {"steps": [5, 25], "hold": 60, "name": None, "gates": {"alpha": 0.01}},
    }
    with Recorder(path, meta) as rec:
        rec.samples(samples)

        def put(s: float, e: ev.Event) -> None:
            rec.event(e.kind, t=at(s), **e.fields())

        put(0, ev.RunEvent(message="starting a rollout of v2", first_step=0))
        put(1, ev.ProbeEvent(message="probe started", url="http://gw/", rate=100.0))
        put(99, ev.BaselineEvent(message="baseline", requests=9000, failures=0, waited_s=1.0))
        windows = {
            0: g.Window("v2", "v1", since=T0 + pd.Timedelta(seconds=100), weight=5),
            1: g.Window("v2", "v1", since=T0 + pd.Timedelta(seconds=200), weight=25),
        }
        put(
            100,
            ev.StepEvent(
                message="step 1",
                step=0,
                weight=5,
                hold_s=60,
                max_hold_s=240,
                since=windows[0].since,
            ),
        )
        first = gate.judge(upto(101), windows[0])
        assert first.outcome == "insufficient"
        rec.event(ev.Kind.VERDICT, t=at(101), **ev.verdict_fields(0, first, 1))
        put(
            160,
            ev.ExtensionEvent(
                message="extending",
                step=0,
                weight=5,
                held_s=60.0,
                max_hold_s=240.0,
                collecting=("max-error-rate",),
            ),
        )
        passed = gate.judge(upto(195), windows[0])
        rec.event(ev.Kind.VERDICT, t=at(195), **ev.verdict_fields(0, passed, 95))
        judged = step_summary(0, 5, upto(195), windows[0], [passed])  # a look before the end
        put(
            200,
            ev.StepEvent(
                message="step 1 passed",
                step=0,
                weight=5,
                state=ev.StepState.PASSED,
                summary=judged,
                since=windows[0].since,
                until=at(200),
            ),
        )
        put(
            200,
            ev.StepEvent(
                message="step 2",
                step=1,
                weight=25,
                hold_s=60,
                max_hold_s=240,
                since=windows[1].since,
            ),
        )
        put(
            205,
            ev.ProbeEvent(
                message="no closed second for 6 s", state=ev.ProbeState.STALLED, silent_s=6.0
            ),
        )
        rec.event(ev.Kind.LEASE, t=at(206), message="lease renewal failed", what="renewal-failed")
        rec.event(ev.Kind.EVENT, t=at(207), message="driver lost", reason="DriverLost")
        failed = gate.judge(upto(240), windows[1])
        assert failed.outcome == "fail", failed
        rec.event(ev.Kind.VERDICT, t=at(240), **ev.verdict_fields(1, failed, 40))
        # as if the probe had delivered every second up to the end: nothing to explain
        end = T0 + pd.Timedelta(seconds=240)
        summary = step_summary(1, 25, traffic, windows[1], [failed], until=end)
        put(
            240,
            ev.StepEvent(
                message=f"step 2 failed: {failed}",
                step=1,
                weight=25,
                state=ev.StepState.FAILED,
                summary=summary,
                until=at(240),
            ),
        )
        put(
            241,
            ev.RunEvent(
                message="rolled back",
                state=ev.RunState.FINISHED,
                outcome=ev.Outcome.ROLLED_BACK,
                reason=ev.Reason.GATE_FAILED,
                step=1,
                exit_code=2,
            ),
        )
        rec.update_metadata(outcome="rolled-back", reason="GateFailed", exit_code=2)
    return path


@pytest.fixture
def gated(tmp_path: Path) -> Replay:
    return replay_load(write_gated_record(tmp_path / "record"))


def test_decision_names_the_gate_its_numbers_and_the_step(gated: Replay) -> None:
    d = gated.decision()
    assert (d.outcome, d.reason, d.step, d.weight, d.exit_code) == (
        "rolled-back",
        "GateFailed",
        2,
        25,
        2,
    )
    assert "rolled back" in d.headline
    assert "GateFailed at step 2 (weight 25%)" in d.headline
    assert [v["gate"] for v in d.verdicts] == ["max-error-rate"]
    why = " ".join(d.why)
    assert "max-error-rate fails (look 40)" in why
    assert "failed" in why
    assert "bounds" in why
    assert "e-value" in why


def test_one_step_table_says_why_replayed_counts_differ(gated: Replay) -> None:
    table = gated.step_table()
    assert list(table["step"]) == [1, 2]
    assert list(table["result"]) == ["passed", "failed (GateFailed)"]  # from the run event
    assert "max-error-rate collecting" in table["extended"].iloc[0]
    assert table["extended"].iloc[1] == ""
    # step 1 was judged at its look 5 s before the end: the replay counts those seconds
    assert "closed after the last look" in table["note"].iloc[0]
    assert table["note"].iloc[1] == ""  # step 2 ended at its deciding look
    assert list(table["verdict"]) == ["pass", "fail"]
    # the replayed counts of step 1 exceed the judged by exactly what the note says
    judged = gated.recorded_steps()
    extra = int(table["requests v1"].iloc[0] - judged["requests v1"].iloc[0])
    assert f"+{extra:,} v1" in table["note"].iloc[0]


def test_every_verdict_and_the_incidents(gated: Replay) -> None:
    v = gated.verdicts()
    assert list(v["look"]) == [1, 95, 40]
    assert list(v["state"]) == ["collecting", "passes", "fails"]
    assert not v["evidence"].str.contains("nan").any()
    incidents = gated.incidents()
    assert list(incidents["kind"]) == ["probe", "baseline", "extension", "probe", "lease", "event"]
    assert list(incidents["problem"]) == [False, False, False, True, True, True]
    assert incidents["state"].iloc[4] == "renewal-failed"


def test_report_leads_with_the_outcome_and_shows_yaml_never_nan(
    gated: Replay, tmp_path: Path
) -> None:
    page = report.write_html(gated, tmp_path / "report.html").read_text()
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    lead = text.index("GateFailed at step 2")
    assert lead < text.index("<h2>timeline</h2>") < text.index("per step (counts")
    assert text.count("per step") == 1  # one per-step table
    assert "steps:\n- 5\n- 25" in text
    assert "name: null" in text
    assert "{&#x27;" not in text
    assert "{'" not in text  # no Python dict repr
    assert not re.search(r"\bnan\b", text, flags=re.I)
    assert "max-error-rate" in text
    assert "no closed second for 6 s" in text


def test_report_of_a_record_without_plan_events(tmp_path: Path) -> None:
    made = synthetic.rollout(duration_s=120, steps=(0, 50), rps=20, events=10)
    old = replay_load(synthetic.write_record(made, tmp_path / "old"))
    assert old.decision().outcome is None
    assert "no outcome recorded" in old.decision().headline
    assert old.step_table().empty
    assert old.verdicts().empty
    page = report.write_html(old, tmp_path / "old.html").read_text()
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "steps by weight change" in text
    assert not re.search(r"\bnan\b", text, flags=re.I)


def test_gate_states_of_every_builtin_gate() -> None:
    from canarylab import gates as g

    samples = _samples(range(60), weight_at=lambda i: 25, error_at=lambda i: 0.0)
    traffic = g.Traffic(samples)
    window = g.Window("v2", "v1", since=T0, weight=25)
    gates = g.from_spec(
        {
            "max_error_rate": 0.05,
            "error_rate_comparison": True,
            "latency_comparison": True,
            "max_p99_latency": 100,
        }
    )
    states = {s.gate: s for s in verdicts.gate_states(g.judge_all(gates, traffic, window))}
    assert set(states) == {g.name for g in gates}
    share = states["traffic-share"]
    assert share.state == "passes"
    assert "at weight 25%" in share.evidence
    assert "bounds" in share.statistic
    comparison = states["error-rate-comparison"]
    assert comparison.evidence.startswith("canary 0/")
    assert "original 0/" in comparison.evidence
    assert "e-value" in comparison.statistic
    assert states["max-p99-latency"].state == "collecting"  # no per-request results
    for s in states.values():
        assert "nan" not in f"{s.evidence} {s.statistic}".lower()
    html_text = verdicts.gates_html(g.judge_all(gates, traffic, window))
    assert html_text.count("<tr>") == len(gates)
    assert "collecting" in html_text


def test_fmt_never_says_nan() -> None:
    assert verdicts.fmt(float("nan")) == "–"
    assert verdicts.fmt(None, "pct") == "–"
    assert verdicts.fmt(float("inf")) == "∞"
    assert verdicts.fmt(0.0123, "pct") == "1.23%"
    assert verdicts.fmt(12345, "int") == "12,345"


def test_a_gate_sentence_of_no_requests_reads_n_a() -> None:
    state = verdicts.gate_state(
        {
            "gate": "error-rate-comparison",
            "outcome": "insufficient",
            "reason": "canary error rate nan% (0/0) vs original nan% (0/0), median nan ms",
            "numbers": {"canary_requests": 0, "canary_failures": 0, "canary_error_rate": None},
        }
    )
    assert state.reason == "canary error rate n/a (0/0) vs original n/a (0/0), median n/a"
    assert state.state == "collecting"


def test_a_probe_that_never_served_leads_the_report(tmp_path: Path) -> None:
    from canarylab.record import Recorder
    from canarylab.record import events as ev

    with Recorder(tmp_path / "r", {"version": "v2", "name": "hello"}) as rec:
        unreachable = ev.ProbeEvent(
            message="http://127.0.0.1:1/ did not serve within 60s",
            state=ev.ProbeState.UNREACHABLE,
            error="ConnectError",
        )
        rec.event(unreachable.kind, **unreachable.fields())
        rec.update_metadata(outcome="rolled-back", reason="ProbeUnreachable", exit_code=2)
    d = replay_load(tmp_path / "r").decision()
    assert d.headline == "rolled back (canary at weight 0) — ProbeUnreachable · exit code 2"
    assert d.why == ["http://127.0.0.1:1/ did not serve within 60s"]
    page = report.write_html(replay_load(tmp_path / "r"), tmp_path / "r.html").read_text()
    assert "did not serve within 60s" in page


def test_insufficient_evidence_names_the_gates_still_collecting(tmp_path: Path) -> None:
    from canarylab.record import Recorder
    from canarylab.record import events as ev

    def verdict(gate: str, outcome: str, look: int) -> dict[str, Any]:
        return {
            "step": 0,
            "gate": gate,
            "outcome": outcome,
            "reason": "r",
            "numbers": {},
            "look": look,
        }

    with Recorder(tmp_path / "r", {"version": "v2"}) as rec:
        rec.event(ev.Kind.STEP, **ev.StepEvent(step=0, weight=5, max_hold_s=75).fields())
        rec.event(ev.Kind.VERDICT, **verdict("traffic-share", "insufficient", 1))
        rec.event(ev.Kind.VERDICT, **verdict("max-error-rate", "insufficient", 1))
        rec.event(ev.Kind.VERDICT, **verdict("traffic-share", "pass", 9))
        extension = ev.ExtensionEvent(
            step=0, weight=5, held_s=15.0, max_hold_s=75.0, collecting=("max-error-rate",)
        )
        rec.event(extension.kind, **extension.fields())
        failed = ev.StepEvent(
            message="step 1 failed: after 75s (max_hold 75s) still collecting: max-error-rate",
            step=0,
            weight=5,
            state=ev.StepState.FAILED,
            reason=ev.Reason.INSUFFICIENT_EVIDENCE,
        )
        rec.event(failed.kind, **failed.fields())
        end = ev.RunEvent(
            state=ev.RunState.FINISHED,
            outcome=ev.Outcome.ROLLED_BACK,
            reason=ev.Reason.INSUFFICIENT_EVIDENCE,
            step=0,
            exit_code=2,
        )
        rec.event(end.kind, **end.fields())
    r = replay_load(tmp_path / "r")
    d = r.decision()
    assert d.reason == "InsufficientEvidence"
    assert d.step == 1
    assert [v["gate"] for v in d.verdicts] == ["max-error-rate"]
    assert d.why[0].startswith("step 1 failed: after 75s")
    table = r.step_table()
    assert table["result"].iloc[0] == "failed (InsufficientEvidence)"
    assert "max-error-rate collecting" in table["extended"].iloc[0]
    assert "stopped before judging" in table["note"].iloc[0]  # no summary was recorded


def test_the_time_slider_shows_the_gates_then(gated: Replay) -> None:
    times = [T0 + pd.Timedelta(seconds=s) for s in (50, 150, 196, 250)]
    assert verdicts.gates_at(gated.verdicts(), times) == [
        "",
        "step 1: max-error-rate collecting",
        "step 1: max-error-rate passes",
        "step 2: max-error-rate fails",
    ]
    spec = report.sections(gated)[0][1]
    assert isinstance(spec, dict)
    captions = [s["args"][0] for s in spec["layout"]["sliders"][0]["steps"]]
    assert any("gates step 2: max-error-rate fails" in str(c) for c in captions)


def test_slider_caption_before_any_action_says_dash_not_nan(gated: Replay) -> None:
    state = frames.state_at(gated.samples, gated.events, T0 + pd.Timedelta(seconds=5))
    assert state["last_action"] == ""
    assert "nan" not in report.describe_state(state)


def test_a_step_stopped_before_a_second_closed_says_what_its_gates_saw(tmp_path: Path) -> None:
    from canarylab.record import Recorder
    from canarylab.record import events as ev

    since, until = T0 + pd.Timedelta(seconds=5), T0 + pd.Timedelta(seconds=6)
    with Recorder(tmp_path / "r", {"version": "v2"}) as rec:
        rec.samples(_samples(range(10), weight_at=lambda i: 5, error_at=lambda i: 0.5))
        started = ev.StepEvent(step=0, weight=5, since=since)
        rec.event(started.kind, t=since.isoformat(), **started.fields())
        numbers = {"canary_requests": 6, "canary_failures": 4, "original_requests": 392}
        rec.event(
            ev.Kind.VERDICT,
            t=until.isoformat(),
            step=0,
            gate="error-rate-comparison",
            outcome="fail",
            reason="r",
            numbers=numbers,
            look=1,
        )
        failed = ev.StepEvent(
            step=0,
            weight=5,
            state=ev.StepState.FAILED,
            summary={"step": 1, "weight": 5, "requests": {}, "verdict": "fail"},
            until=until,
        )
        rec.event(failed.kind, t=until.isoformat(), **failed.fields())
    note = replay_load(tmp_path / "r").step_table()["note"].iloc[0]
    assert "summary counted no closed second: the step stopped 1.0 s after it began" in note
    assert "its gates judged 398 requests" in note
