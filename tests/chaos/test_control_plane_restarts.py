"""The control plane fails under a running controller: etcd and the API server crash
and come back mid-rollout, and watch connections drop while changes are made.

The controller is never restarted here: it must reconnect on its own and converge,
and a change made around the outage must reach the route by a watch event, not by
the periodic resync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from canarylab.errors import SandboxError
from tests.chaos import faults, invariants
from tests.chaos.faults import PARENT, ProbeLoop, Sampler
from tests.helpers import wait_for
from tests.integration.controller_kit import Kit

pytestmark = pytest.mark.integration

RESYNC = 30.0
"""The controller's periodic pass (canarylab.operator.handlers.RESYNC): a change seen
sooner than ``0.8 * RESYNC`` after the outage came through a watch."""


def test_restart_keeps_ports_and_data(sandbox: Any, api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "kept"}, "data": {"a": "1"}})
    before = sandbox.state()
    pids = {p.name: p.pid for p in before.processes}

    etcd = sandbox.restart("etcd", grace=0)
    apiserver = sandbox.restart("kube-apiserver", grace=0, pause=0.5)

    after = sandbox.state()
    assert after.ports == before.ports
    assert etcd.pid != pids["etcd"]
    assert apiserver.pid != pids["kube-apiserver"]
    recorded = {p.name: p for p in after.processes}
    assert recorded["etcd"] == etcd
    assert recorded["kube-apiserver"] == apiserver
    assert sandbox.status()["running"]
    kept = wait_for(lambda: core.read_namespaced_config_map("kept", namespace), 30, what="read")
    assert kept.data == {"a": "1"}


def test_restart_refuses_what_it_cannot_restart(sandbox: Any) -> None:
    with pytest.raises(SandboxError, match="choose one of etcd, kube-apiserver"):
        sandbox.restart("haproxy")


@pytest.fixture
def watched(kit: Kit, sandbox: Any, gateway: str) -> Iterator[tuple[Sampler, ProbeLoop]]:
    """The demo app behind the gateway, with the sampler and the probe running."""
    faults.create_app(kit)
    wait_for(lambda: faults.gateway_answers(gateway, kit.ns), 90, what="the gateway to serve")
    sampler = Sampler(str(sandbox.kubeconfig), kit.ns)
    probe = ProbeLoop(gateway, kit.ns)
    sampler.start()
    probe.start()
    yield sampler, probe
    probe.stop()
    sampler.stop()


def finish(
    kit: Kit, before: dict[str, Any], version: str, sampler: Sampler, probe: ProbeLoop
) -> None:
    """Delete the canary (unless under way) and check what the fault-injection suite checks."""
    cd = kit.get(PARENT)
    if cd is not None and not cd["metadata"].get("deletionTimestamp"):
        kit.delete(PARENT)
    wait_for(lambda: kit.get(PARENT) is None, 120, what="the CanaryDeployment to go")
    requests = probe.stop()
    sampler.stop()
    problems = faults.settled_problems(kit, before, version) + sampler.violations
    failed = int(requests["error"].notna().sum())
    print(f"[chaos] probe {len(requests)} requests, {failed} failed; {sampler.samples} samples")
    assert problems == []
    assert len(requests) > 200
    assert failed == 0, requests[requests["error"].notna()].head(20)


def test_apiserver_and_etcd_restart_mid_rollout(
    kit: Kit, controller: Any, sandbox: Any, watched: tuple[Sampler, ProbeLoop]
) -> None:
    sampler, probe = watched
    before = invariants.route_shape(kit.get_route("apisix", PARENT) or {})
    pid = controller.proc.pid
    kit.create(faults.canary_body("v1", 20))
    wait_for(faults.converged(kit, 20), 120, what="Serving at 20")

    kit.patch(PARENT, {"weight": 60})
    started = time.monotonic()
    sandbox.restart("etcd", grace=0)
    sandbox.restart("kube-apiserver", grace=0, pause=1.0)
    print(f"[chaos] etcd and kube-apiserver restarted in {time.monotonic() - started:.1f}s")
    wait_for(faults.converged(kit, 60), 120, what="Serving at 60 after the restarts")

    kit.patch(PARENT, {"replace": True})
    wait_for(lambda: kit.status(PARENT).get("phase") == "Replaced", 120, what="Replaced")
    finish(kit, before, "v1", sampler, probe)
    assert controller.proc.pid == pid, "the controller was restarted; it should have reconnected"
    assert controller.proc.poll() is None


def test_dropped_watches_lose_nothing(
    kit: Kit, controller: Any, sandbox: Any, watched: tuple[Sampler, ProbeLoop]
) -> None:
    sampler, probe = watched
    before = invariants.route_shape(kit.get_route("apisix", PARENT) or {})
    pid = controller.proc.pid
    kit.create(faults.canary_body("v1", 10))
    wait_for(faults.converged(kit, 10), 120, what="Serving at 10")

    # A change in flight when the API server goes away, and one right after it is back.
    kit.patch(PARENT, {"weight": 30})
    sandbox.restart("kube-apiserver", grace=0, pause=3.0)
    back = time.monotonic()
    kit.patch(PARENT, {"weight": 70})
    wait_for(faults.converged(kit, 70), 120, what="Serving at 70 after the outage")
    took = time.monotonic() - back
    print(f"[chaos] the change after the outage reached the route in {took:.1f}s")
    assert took < 0.8 * RESYNC, "the change came by resync, not by the watch"

    # A deletion made just before the watches drop is still carried out.
    kit.delete(PARENT)
    sandbox.restart("kube-apiserver", grace=0, pause=2.0)
    finish(kit, before, "v0", sampler, probe)
    assert controller.proc.pid == pid
