"""The controller's Prometheus series: phase as 0/1/2, rollout duration once, info."""

from __future__ import annotations

import datetime as dt

from prometheus_client import generate_latest

from canarylab import __version__
from canarylab.operator import metrics


def value(metric: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


def test_phase_gauge_and_duration_histogram() -> None:
    created = "2026-12-02T10:00:00Z"
    moment = dt.datetime(2026, 12, 2, 10, 5, tzinfo=dt.UTC)
    before = value("canarylab_rollout_duration_seconds_count", outcome="succeeded") or 0.0
    metrics.observe_canary("ns", "m1", 50, 50, 1, phase="Serving", previous_phase="Progressing")
    assert value("canarylab_canary_status", namespace="ns", name="m1") == 0
    for _ in range(2):  # only the first pass that sees it finished observes the duration
        metrics.observe_canary(
            "ns",
            "m1",
            100,
            100,
            1,
            phase="Replaced",
            previous_phase="Replacing",
            created=created,
            moment=moment,
        )
        metrics.observe_canary(
            "ns",
            "m1",
            100,
            100,
            1,
            phase="Replaced",
            previous_phase="Replaced",
            created=created,
            moment=moment,
        )
    assert value("canarylab_canary_status", namespace="ns", name="m1") == 1
    after = value("canarylab_rollout_duration_seconds_count", outcome="succeeded")
    assert after == before + 2  # two transitions into Replaced in this test, one each
    metrics.observe_canary("ns", "m2", 0, 0, 0, phase="Aborted", previous_phase="Serving")
    assert value("canarylab_canary_status", namespace="ns", name="m2") == 2
    assert [metrics.phase_value(p) for p in ("Failed", "Paused", "Replaced")] == [2, 0, 1]
    metrics.forget_canary("ns", "m2")
    assert value("canarylab_canary_status", namespace="ns", name="m2") is None
    assert value("canarylab_info", version=__version__) == 1
    assert b"canarylab_rollout_duration_seconds_bucket" in generate_latest(metrics.REGISTRY)
