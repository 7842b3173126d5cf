"""The dead-man's switch as pure decisions: a lapsed lease pauses, a renewal resumes.

Every moment is injected (``Observed.now``); no clock, no cluster.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from canarylab.model.decide import DRIVER_LOST, EnsureCanary, SetMatch, SetWeights, decide
from canarylab.model.lease import LeaseSpec, parse_lease, spec_digest
from canarylab.model.spec import Match, SpecError, TrafficSplit
from canarylab.model.status import same_status, status_body, transitions
from canarylab.rollout import status as rollout_status
from tests.unit.test_model_decide import observed, spec

T0 = dt.datetime(2026, 12, 2, 8, 0, 0, tzinfo=dt.UTC)
HOLDER = "sre@laptop:4242"


def leased(renewed: dt.datetime = T0, duration: int = 30, **overrides: Any) -> Any:
    lease = LeaseSpec(HOLDER, duration, renewed).body()
    return spec(lease=lease, **overrides)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_fresh_lease_serves_the_desired_weight_and_asks_to_decide_again_at_its_end() -> None:
    s = leased()
    d = decide(s, observed(s, now=at(29)))
    assert SetWeights(TrafficSplit(70, 30)) in d.actions
    assert d.status.phase == "Serving"
    paused = d.status.condition("Paused")
    assert paused is not None
    assert (paused.status, paused.reason) == ("False", "LeaseHeld")
    assert HOLDER in paused.message
    assert d.recheck_at == at(30)


def test_lapsed_lease_sets_weight_zero_keeps_the_canary_and_says_driver_lost() -> None:
    s = leased(match={"headers": [{"name": "X-Canary", "value": "yes"}]})
    d = decide(s, observed(s, now=at(30.5)))
    # the canary Deployment is kept (EnsureCanary), the route and match route carry nothing
    assert d.actions == (EnsureCanary(), SetWeights(TrafficSplit(100, 0)), SetMatch(Match()))
    assert d.status.phase == "Paused"
    assert d.status.weights == TrafficSplit(100, 0)
    paused = d.status.condition("Paused")
    assert paused is not None
    assert (paused.status, paused.reason) == ("True", DRIVER_LOST)
    assert HOLDER in paused.message
    assert "2026-12-02T08:00:00.000000Z" in paused.message  # when it last renewed
    shifted = d.status.condition("TrafficShifted")
    assert shifted is not None
    assert (shifted.status, shifted.reason) == ("False", DRIVER_LOST)
    assert d.status.message.startswith(DRIVER_LOST)
    assert d.recheck_at is None  # nothing more for the clock to change


def test_deadline_itself_is_not_a_lapse() -> None:
    s = leased()
    assert decide(s, observed(s, now=at(30))).status.phase == "Serving"
    assert decide(s, observed(s, now=at(30.001))).status.phase == "Paused"


def test_the_pause_is_the_same_status_on_every_pass() -> None:
    """No "seconds ago" in status: a paused canary is written once, not every pass."""
    s = leased()
    first = decide(s, observed(s, now=at(31))).status
    later = decide(s, observed(s, now=at(600))).status
    assert first == later


def test_renewal_after_a_lapse_resumes() -> None:
    lapsed = leased()
    assert decide(lapsed, observed(lapsed, now=at(45))).status.phase == "Paused"
    renewed = leased(renewed=at(44))
    d = decide(renewed, observed(renewed, now=at(45), phase="Paused"))
    assert SetWeights(TrafficSplit(70, 30)) in d.actions
    assert d.status.phase == "Serving"
    assert d.status.condition("Paused") is not None
    assert d.status.condition("Paused").status == "False"  # type: ignore[union-attr]


def test_removing_the_lease_resumes_and_behaves_as_hand_made() -> None:
    hand_made = spec()
    d = decide(hand_made, observed(hand_made, now=at(45), phase="Paused"))
    assert SetWeights(TrafficSplit(70, 30)) in d.actions
    assert d.status.phase == "Serving"
    assert d.status.condition("Paused") is None
    # exactly today's decision: the clock plays no part without a lease
    assert d == decide(hand_made, observed(hand_made))


def test_lapse_during_replace_does_not_pause() -> None:
    s = leased(replace=True)
    d = decide(s, observed(s, now=at(120)))
    assert d.status.phase == "Replacing"
    assert SetWeights(TrafficSplit(100, 0)) not in d.actions
    paused = d.status.condition("Paused")
    assert paused is not None
    assert (paused.status, paused.reason) == ("False", "LeaseLapsed")
    assert "replace" in paused.message


def test_lapse_at_weight_zero_has_nothing_to_pause() -> None:
    s = leased(weight=0)
    d = decide(s, observed(s, now=at(120)))
    assert d.status.phase == "Serving"
    assert d.status.condition("Paused").reason == "LeaseLapsed"  # type: ignore[union-attr]


def test_a_lease_without_a_clock_is_refused() -> None:
    s = leased()
    with pytest.raises(ValueError, match=r"Observed\.now"):
        decide(s, observed(s))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"durationSeconds": 30, "renewTime": "2026-12-02T08:00:00Z"}, "holder is required"),
        ({"holder": "a", "durationSeconds": 2, "renewTime": "2026-12-02T08:00:00Z"}, "≥ 5"),
        ({"holder": "a", "durationSeconds": 30, "renewTime": "yesterday"}, "RFC 3339"),
        ({"holder": "a", "durationSeconds": 30, "renewTime": "2026-12-02T08:00:00"}, "time zone"),
        ({"holder": "a", "durationSeconds": 30}, "renewTime is required"),
    ],
)
def test_bad_leases_name_the_field(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        spec(lease=raw)


def test_lease_round_trips_through_its_body() -> None:
    lease = LeaseSpec(HOLDER, 30, at(0.25))
    assert parse_lease(lease.body()) == lease
    assert parse_lease({**lease.body(), "renewTime": "2026-12-02T08:00:00Z"}) == LeaseSpec(
        HOLDER, 30, T0
    )


def test_a_pure_renewal_writes_no_status_but_the_client_still_counts_it_observed() -> None:
    s = leased()
    raw_spec: dict[str, Any] = {
        "parentDeployment": "web",
        "weight": 30,
        "lease": LeaseSpec(HOLDER, 30, T0).body(),
    }
    renewed_spec = {**raw_spec, "lease": LeaseSpec(HOLDER, 30, at(10)).body()}
    assert spec_digest(raw_spec) == spec_digest(renewed_spec)
    assert spec_digest(raw_spec) != spec_digest({**raw_spec, "weight": 25})
    status = decide(s, observed(s, now=at(5))).status
    before = status_body(status, 7, {}, "T1", spec_digest(raw_spec))
    after_renewal = status_body(status, 8, before, "T2", spec_digest(renewed_spec))
    assert same_status(before, after_renewal)  # generation 7 → 8 alone costs no write
    changed = status_body(status, 9, before, "T3", spec_digest({**raw_spec, "weight": 25}))
    assert not same_status(before, changed)
    # Rollout.status(): generation 8 with a status of generation 7 is observed all the same
    obj = {
        "metadata": {"name": "web", "generation": 8},
        "spec": renewed_spec,
        "status": before,
    }
    assert rollout_status.parse(obj).observed
    stale = {**obj, "spec": {**renewed_spec, "weight": 25}, "metadata": {"generation": 9}}
    assert not rollout_status.parse(stale).observed


def test_driver_lost_is_announced_once_as_a_warning_with_the_silence() -> None:
    s = leased()
    serving = status_body(decide(s, observed(s, now=at(5))).status, 1, {}, "T1", "h")
    paused = status_body(decide(s, observed(s, now=at(31))).status, 1, serving, "T2", "h")
    found = transitions(serving, paused, since_renewal_s=31.2)
    warnings = [t for t in found if t.type == "Warning"]
    assert [t.reason for t in warnings] == [DRIVER_LOST]
    assert HOLDER in warnings[0].message
    assert "last renewal 31s ago" in warnings[0].message
    assert {t.reason for t in found} == {DRIVER_LOST, "Paused", "WeightsApplied"}
    again = status_body(decide(s, observed(s, now=at(90))).status, 1, paused, "T3", "h")
    assert same_status(paused, again)
    assert transitions(paused, again, since_renewal_s=90) == []
    snap = rollout_status.parse({"metadata": {"name": "web"}, "spec": {}, "status": paused})
    assert snap.paused
    assert snap.problem.startswith(DRIVER_LOST)
