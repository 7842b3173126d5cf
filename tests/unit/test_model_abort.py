"""spec.aborted: the canary is held at 0% with everything on the parent, and resumes."""

from __future__ import annotations

import datetime as dt

from canarylab.model.decide import CopyTemplateToParent, EnsureCanary, SetMatch, SetWeights, decide
from canarylab.model.spec import Match, TrafficSplit
from canarylab.model.status import reason_of, status_body, transitions
from tests.unit.test_model_decide import deploy, observed, spec

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_aborted_routes_everything_to_the_parent_and_keeps_the_weight_asked_for() -> None:
    s = spec(aborted=True, weight=40, match={"headers": [{"name": "X", "value": "1"}]})
    d = decide(s, observed(s))
    assert d.actions == (EnsureCanary(), SetWeights(TrafficSplit(100, 0)), SetMatch(Match()))
    assert d.status.phase == "Aborted"
    assert d.status.weights == TrafficSplit(100, 0)
    assert d.status.condition("Aborted").status == "True"  # type: ignore[union-attr]
    assert d.status.condition("TrafficShifted").status == "False"  # type: ignore[union-attr]
    assert "wants 40" in d.status.message
    assert reason_of(d.status) == "Aborted"


def test_resume_is_clearing_the_flag() -> None:
    s = spec(aborted=False, weight=40)
    d = decide(s, observed(s))
    assert d.status.phase == "Serving"
    assert d.status.weights == TrafficSplit(60, 40)
    assert d.status.condition("Aborted") is None


def test_abort_wins_over_a_lapsed_lease_and_a_replace_not_yet_copied() -> None:
    lease = {"holder": "me", "durationSeconds": 5, "renewTime": "2026-12-02T11:00:00Z"}
    s = spec(aborted=True, replace=True, lease=lease)
    d = decide(s, observed(s, now=NOW))
    assert d.status.phase == "Aborted"
    assert CopyTemplateToParent() not in d.actions
    assert d.status.condition("Replaced") is None


def test_a_replace_already_in_the_parent_goes_on() -> None:
    s = spec(aborted=True, replace=True)
    d = decide(s, observed(s, parent=deploy(template_hash=s.template_hash)))
    assert d.status.phase != "Aborted"  # the parent runs the new template: finish moving to it


def test_status_reason_and_a_warning_event_on_abort() -> None:
    s = spec(aborted=True)
    before = status_body(decide(spec(), observed(spec())).status, 1, {}, "t0")
    assert before["reason"] == "WeightApplied"
    after = status_body(decide(s, observed(s)).status, 2, before, "t1")
    assert after["reason"] == "Aborted"
    (phase, *_) = transitions(before, after)
    assert (phase.type, phase.reason) == ("Warning", "Aborted")


def test_reason_of_failures_and_pauses() -> None:
    d = decide(spec(), observed(spec(), parent=None))
    assert reason_of(d.status) == "ParentNotFound"
