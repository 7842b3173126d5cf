"""The dead-man's switch against the real sandbox and controller.

A real driver process holds a lease, puts the canary at 25% and is ``kill -9``ed: within
the lease's duration + 5 s the route gives the canary 0%, the CanaryDeployment says
``DriverLost``, and real HTTP through the sandbox gateway reaches only the original.
A lease renewed for longer than its duration never pauses, and costs no route or
status write.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from canarylab.rollout import Rollout
from tests.helpers import wait_for
from tests.integration.controller_kit import Kit
from tests.integration.rollout_kit import PARENT, deploy_parent, route_backends
from tests.integration.test_dataplane_helpers import wait_backend

pytestmark = pytest.mark.integration

LEASE_S = 6
CANARY = f"{PARENT}-canary"

DRIVER = textwrap.dedent(
    """
    import sys, time
    from canarylab.rollout import Rollout

    namespace, kubeconfig, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
    r = Rollout(namespace, "hello", kube=kubeconfig)
    with r.lease(duration_s=duration, holder="driver-under-test"):
        r.create_canary(image="canarylab/demo:v2", version="v2", env={"DEMO_MESSAGE": "canary"})
        r.wait_ready(timeout=120)
        r.set_weight(25, timeout=120)
        print("AT25", flush=True)
        while True:
            time.sleep(1)
    """
)


def canary_weight(api: Any, namespace: str) -> int:
    return route_backends(api, namespace).get(CANARY, 0)


def test_killed_driver_pauses_the_canary_at_zero(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    kit = Kit(api_client, namespace)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    with out.open("w") as sink:
        driver = subprocess.Popen(
            [sys.executable, str(script), namespace, str(sandbox.kubeconfig), str(LEASE_S)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        # set-up: generous, it is not what is measured
        wait_for(
            lambda: "AT25" in out.read_text() or driver.poll() is not None,
            180,
            what="the driver at weight 25",
        )
        assert driver.poll() is None, out.read_text()
        assert canary_weight(api_client, namespace) == 25
        held = kit.get(PARENT)
        assert held is not None
        assert held["spec"]["lease"]["holder"] == "driver-under-test"
        driver.kill()  # SIGKILL: no cleanup, no lease release
        killed = time.monotonic()
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    last = kit.get(PARENT)
    assert last is not None
    assert "lease" in last["spec"]  # nobody removed it: it must lapse

    wait_for(
        lambda: canary_weight(api_client, namespace) == 0,
        LEASE_S + 5 - (time.monotonic() - killed),
        interval=0.05,
        what="the route to give the canary 0% after the driver's kill -9",
    )
    at_zero = time.monotonic() - killed
    print(f"kill -9 → canary 0% on the route: {at_zero:.2f}s (lease {LEASE_S}s)")
    assert at_zero <= LEASE_S + 5

    status = kit.wait_phase("Paused", name=PARENT, timeout=5)
    paused = kit.condition(PARENT, "Paused")
    assert (paused["status"], paused["reason"]) == ("True", "DriverLost")
    assert "driver-under-test" in paused["message"]
    assert status["weights"]["canary"] == 0
    assert CANARY in kit.deployments()  # kept, for an SRE to look at
    lost = wait_for(
        lambda: [e for e in kit.events(PARENT) if e.reason == "DriverLost"],
        10,
        what="a DriverLost Event",
    )
    assert len(lost) == 1
    assert lost[0].type == "Warning"
    assert "driver-under-test" in lost[0].message
    assert "ago" in lost[0].message
    metric = f'canarylab_canary_paused{{name="{PARENT}",namespace="{namespace}"}} 1.0'
    wait_for(lambda: metric in controller.metrics(), 10, what=metric)

    # real HTTP through the gateway reaches only the original
    rule = f"ApisixRoute/{namespace}/{PARENT}/main"
    wait_backend(
        sandbox, rule, lambda b: sum(1 for s in b["servers"] if s["weight"] > 0) == 2, timeout=60
    )
    settings = ProbeSettings(
        url=sandbox.status()["gateway"] + "/",
        headers=(("Host", sandbox_host(PARENT, namespace)),),
        max_requests=200,
        connections=8,
        duration=120,
    )
    summary = asyncio.run(Probe(settings).run()).summary()
    assert summary["by_version"] == {"v1": 200}, summary

    # an SRE resumes by removing the lease: the desired weight applies again
    kit.patch(PARENT, {"lease": None})
    wait_for(lambda: canary_weight(api_client, namespace) == 25, 20, what="weight 25 again")
    kit.wait_phase("Serving", name=PARENT, timeout=10)


def test_a_renewed_lease_never_pauses_and_costs_no_writes(
    controller: Any, api_client: Any, namespace: str
) -> None:
    deploy_parent(api_client, namespace)
    kit = Kit(api_client, namespace)
    r = Rollout(namespace, PARENT, kube=api_client)
    with r.lease(duration_s=LEASE_S) as lease:
        r.create_canary(image="canarylab/demo:v2", version="v2")
        r.wait_ready(timeout=120)
        assert r.set_weight(25, timeout=60).weight_applied
        route = kit.get_route("apisix", PARENT)
        assert route is not None
        before = kit.get(PARENT)
        assert before is not None
        started = lease.renewals

        def long_enough() -> bool:
            # at every look: still serving 25%, never paused
            assert canary_weight(api_client, namespace) == 25
            assert kit.status(PARENT)["phase"] == "Serving"
            return lease.renewals - started >= 2 * 3 + 1  # > 2 lease durations of renewals

        wait_for(long_enough, 120, interval=0.5, what="renewals over two lease durations")
        assert lease.error is None
        after = kit.get(PARENT)
        assert after is not None
        assert after["metadata"]["generation"] > before["metadata"]["generation"]
        # renewals wrote neither the route nor the status
        again = kit.get_route("apisix", PARENT)
        assert again is not None
        assert again["metadata"]["resourceVersion"] == route["metadata"]["resourceVersion"]
        assert after["status"] == before["status"]
        assert r.status().weight_applied  # still observed, though the generation moved on
    gone = kit.get(PARENT)
    assert gone is not None
    assert "lease" not in gone["spec"]  # released: behaves as hand-made
    assert canary_weight(api_client, namespace) == 25
    r.abort()
