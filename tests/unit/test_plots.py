"""The display frames and figures on synthetic rollouts with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from canarylab.plots import frames, latency_distribution, step_bars, step_table, synthetic, timeline


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
