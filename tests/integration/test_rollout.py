"""Rollout primitives against the real sandbox and controller: idempotent, recorded, typed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from canarylab import record
from canarylab.record import Recorder
from canarylab.rollout import Rollout, RolloutError
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    route_backends,
    route_is_all_parent,
)

pytestmark = pytest.mark.integration


def test_create_weight_abort_recorded_and_idempotent(
    controller: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    with Recorder(tmp_path / "rec") as rec:
        r = Rollout(namespace, PARENT, kube=api_client, recorder=rec)
        first = r.create_canary(image="canarylab/demo:v2", version="v2", replicas=1)
        assert first.exists
        assert first.version == "v2"
        again = r.create_canary(image="canarylab/demo:v2", version="v2", replicas=1)
        assert again.exists  # the same canary, no error, no second object
        with pytest.raises(RolloutError, match="already rolls out version 'v2'"):
            r.create_canary(image="canarylab/demo:v3", version="v3")
        ready = r.wait_ready(timeout=60)
        assert ready.ready_replicas == 1
        s = r.set_weight(30)
        assert (s.desired_weight, s.applied_weight, s.parent_weight) == (30, 30, 70)
        assert route_backends(api_client, namespace)[PARENT] == 70
        assert r.set_weight(30).weight_applied  # unchanged: recorded as such
        # the async variants do not block the loop and give the same snapshot type
        s = asyncio.run(r.aset_weight(10))
        assert s.applied_weight == 10
        gone = r.abort()
        assert not gone.exists
    assert route_is_all_parent(api_client, namespace)
    assert canary_objects(api_client, namespace) == []
    rec_ = record.load(tmp_path / "rec")
    actions = rec_.events_of("action")
    results = list(zip(actions["what"], actions["result"], strict=True))
    assert results.count(("create_canary", "created")) == 1
    assert ("create_canary", "unchanged") in results
    assert ("set_weight", "unchanged") in results
    assert ("abort", "rolled back") in results
    assert all("@" in who for who in actions["who"])
    status = rec_.events_of("status")
    assert {30, 10, 0} <= set(status["applied_weight"].dropna().astype(int))
    assert len(rec_.events_of("event")) > 0  # the controller's Kubernetes Events


def test_actions_on_a_missing_canary_say_what_to_do(
    controller: Any, api_client: Any, namespace: str
) -> None:
    r = Rollout(namespace, PARENT, kube=api_client)
    assert not r.status().exists
    with pytest.raises(RolloutError, match="create the canary first"):
        r.set_weight(10)
    with pytest.raises(RolloutError, match="weight must be an integer from 0 to 100"):
        r.set_weight(101)
    with pytest.raises(RolloutError, match=r"parent Deployment .* does not exist"):
        r.create_canary(image="canarylab/demo:v2", version="v2")
    assert not r.abort().exists  # nothing to abort is not an error


def test_dry_run_describes_the_plan_and_changes_nothing(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    from canarylab.rollout.session import RolloutSession, RunbookParameters

    deploy_parent(api_client, namespace, replicas=1)
    params = RunbookParameters(
        namespace=namespace,
        parent=PARENT,
        version="v2",
        image="canarylab/demo:v2",
        steps=(10, 100),
        hold=5,
        gates={"max_error_rate": 0.05},
        kubeconfig=str(sandbox.kubeconfig),
        output_dir=str(tmp_path),
        dry_run=True,
    )
    text = RolloutSession(params).describe()
    assert "now: hello: absent" in text
    assert (
        "step 1: weight 10%, hold 5s (up to 65s while gates collect, then fail), "
        "gates: traffic-share, max-error-rate"
    ) in text
    assert "then: replace the parent" in text
    assert canary_objects(api_client, namespace) == []
