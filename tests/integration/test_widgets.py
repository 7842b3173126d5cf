"""The control panel and the live chart against the sandbox, the controller and real traffic.

Plain pytest, no browser: widget values are set the way the front end sets them
(``slider.value = ...``, ``button.click()``) and the cluster is read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from canarylab import record
from canarylab.rollout import Rollout
from canarylab.rollout.status import GROUP, PLURAL, VERSION
from canarylab.widgets import ControlPanel
from canarylab.widgets.session import StepThrough, StepThroughSettings
from tests.helpers import wait_for
from tests.integration.rollout_kit import PARENT, deploy_parent

pytestmark = pytest.mark.integration


def spec_weight(api: Any, namespace: str) -> int:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, PARENT
    )
    return int(obj["spec"]["weight"])


def test_slider_patches_the_resource_and_errors_leave_no_half_state(
    controller: Any, api_client: Any, namespace: str
) -> None:
    deploy_parent(api_client, namespace)
    rollout = Rollout(namespace, PARENT, kube=api_client)
    panel = ControlPanel(
        rollout, create={"version": "v2", "image": "canarylab/demo:v2", "replicas": 1}
    )
    assert panel.slider.disabled
    assert "no canary" in panel.status_html.value
    panel.buttons["create"].click()
    assert panel.error_html.value == ""
    wait_for(lambda: rollout.status().ready, 60, what="canary ready")

    panel.slider.value = 35  # what a release of the slider sends
    assert spec_weight(api_client, namespace) == 35
    wait_for(lambda: rollout.status().weight_applied, 30, what="weight 35 applied")
    panel.refresh()
    assert "desired 35%" in panel.status_html.value
    assert "applied 35%" in panel.status_html.value

    # Somebody else deletes the canary; the next move is refused by the API layer:
    # the panel says why and shows the cluster's truth, not the slider's wish.
    rollout.delete()
    panel.slider.value = 80
    assert "create the canary first" in panel.error_html.value
    assert panel.slider.value == 0
    assert panel.slider.disabled
    assert "no canary" in panel.status_html.value


def test_live_chart_gains_points_and_shows_canary_traffic(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    session = StepThrough(
        StepThroughSettings(
            namespace=namespace,
            parent=PARENT,
            replicas=1,
            kubeconfig=str(sandbox.kubeconfig),
            probe_rate=150,
            record_dir=str(tmp_path / "record"),
            window_s=120,
        )
    )
    try:
        chart = session.chart
        wait_for(lambda: chart.points("v1") >= 2, 20, what="original traffic on the chart")
        before = chart.points("v1")
        wait_for(lambda: chart.points("v1") > before, 10, what="the chart to keep updating")
        session.create()
        session.shift(50)
        wait_for(lambda: chart.points("v2") >= 2, 20, what="canary traffic on the chart")

        def canary_share() -> float:
            return float(max(chart.figure.data[chart._traces_for("v2")[0]].y))

        # The first canary second is partial (its processes are just starting); within a
        # few seconds a whole second shows about half the traffic.
        wait_for(lambda: canary_share() > 20, 20, what="the canary's share near 50% on the chart")
        assert chart.errors == []
        weights = chart.figure.data[1].y  # applied weight line
        assert 50 in list(weights)
        session.delete()
    finally:
        path = session.close(outcome="test")
    r = record.load(path)
    what = set(r.events_of("action")["what"])
    assert {"create_canary", "set_weight", "delete"} <= what
    assert set(r.samples["version"]) >= {"v1", "v2"}
    assert r.totals["failed"] == 0
