"""Controller-driven acceptance: the canarylab controller moves a real demo app's traffic
through the sandbox gateway while the probe watches.

- Replace under load: from weight 50 until the canary is removed, at ≥ 500 requests/s,
  zero failed requests.
- Deleting a CanaryDeployment under load: zero failed requests, and traffic ends 100%
  on the parent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pandas as pd
import pytest

from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from tests.helpers import wait_for
from tests.integration.controller_kit import APISIX, Kit, canary
from tests.integration.test_dataplane_helpers import (
    assert_served_load,
    demo_deployment,
    wait_backend,
)

pytestmark = pytest.mark.integration

RATE = 600


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:
    return Kit(api_client, namespace)


def demo_parent(kit: Kit) -> None:
    """``web``: 2 demo-app processes at v1, its Service, and an ApisixRoute on the
    namespace's sandbox host."""
    body = demo_deployment("web", "v1", replicas=2, env={"DEMO_MESSAGE": "hello world"})
    labels = {"app": "web"}
    body["metadata"]["labels"] = labels
    body["spec"]["selector"] = {"matchLabels": labels}
    body["spec"]["template"]["metadata"]["labels"] = labels
    kit.apps.create_namespaced_deployment(kit.ns, body)
    kit.core.create_namespaced_service(
        kit.ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80}]},
        },
    )
    group, version, plural = APISIX
    route = {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": "web"},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "match": {"paths": ["/*"], "hosts": [sandbox_host("web", kit.ns)]},
                    "backends": [{"serviceName": "web", "servicePort": 80}],
                }
            ]
        },
    }
    kit.custom.create_namespaced_custom_object(group, version, kit.ns, plural, route)


def demo_canary(weight: int) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "canarylab/demo:v2",
                    "env": [{"name": "DEMO_MESSAGE", "value": "hello Hongbo"}],
                }
            ]
        },
    }
    return canary("web", "web", "apisix", "web", weight=weight, template=template)


def split(weight: int, servers: int) -> Any:
    def check(item: dict[str, Any]) -> bool:
        found = item["servers"]
        total = sum(s["weight"] for s in found)
        return (
            len(found) == servers
            and total > 0
            and any(abs(s["weight"] / total - weight / 100) < 0.005 for s in found)
        )

    return check


async def under_load(gateway: str, host: str, scenario: Any) -> Any:
    """Run ``scenario`` (a blocking function) in a thread while the probe sends RATE/s;
    stop the probe two seconds after it returns."""
    probe = Probe(
        ProbeSettings(
            url=gateway + "/", headers=(("Host", host),), duration=120, rate=RATE, connections=64
        )
    )
    running = asyncio.create_task(probe.run())
    await asyncio.sleep(2)
    try:
        await asyncio.to_thread(scenario)
        await asyncio.sleep(2)
    finally:
        probe.stop()
    return await running


def assert_no_failures(result: Any) -> None:
    summary = result.summary()
    bad = result.requests[result.requests["error"].notna()]
    assert summary["failed_total"] == 0, {
        "summary": summary,
        "statuses": bad["status"].value_counts().to_dict(),
    }


def last_seconds(result: Any, seconds: int) -> pd.DataFrame:
    samples = result.samples
    return samples[samples["second"] > samples["second"].max() - pd.Timedelta(seconds=seconds)]


def test_replace_under_load_has_zero_failures(kit: Kit, sandbox: Any) -> None:
    demo_parent(kit)
    kit.create(demo_canary(50))
    kit.wait_phase("Serving", timeout=60)
    rule = f"ApisixRoute/{kit.ns}/web/main"
    wait_backend(sandbox, rule, split(50, 3))
    gateway, host = sandbox.status()["gateway"], sandbox_host("web", kit.ns)

    def replace() -> None:
        kit.patch("web", {"replace": True})
        kit.wait_phase("Replaced", timeout=90)
        wait_for(lambda: "web-canary" not in kit.deployments(), 30, what="canary Deployment gone")
        wait_backend(sandbox, rule, lambda b: len(b["servers"]) == 2, timeout=90)

    started = time.monotonic()
    result = asyncio.run(under_load(gateway, host, replace))
    print(f"replace under load: {result.summary()} in {time.monotonic() - started:.1f}s")
    assert_no_failures(result)
    # The parent now runs the canary's template: v2 answers everything at the end.
    assert set(last_seconds(result, 1)["version"]) == {"v2"}
    assert_served_load(result)


def test_deleting_canary_under_load_has_zero_failures(kit: Kit, sandbox: Any) -> None:
    demo_parent(kit)
    kit.create(demo_canary(50))
    kit.wait_phase("Serving", timeout=60)
    rule = f"ApisixRoute/{kit.ns}/web/main"
    wait_backend(sandbox, rule, split(50, 3))
    gateway, host = sandbox.status()["gateway"], sandbox_host("web", kit.ns)

    def delete() -> None:
        kit.delete()
        kit.wait_gone(timeout=60)
        wait_for(lambda: "web-canary" not in kit.deployments(), 30, what="canary Deployment gone")
        wait_backend(sandbox, rule, lambda b: len(b["servers"]) == 2, timeout=90)

    result = asyncio.run(under_load(gateway, host, delete))
    print(f"delete under load: {result.summary()}")
    assert_no_failures(result)
    assert set(last_seconds(result, 1)["version"]) == {"v1"}
    assert_served_load(result)


def test_controller_match_route_sends_header_traffic_to_canary(kit: Kit, sandbox: Any) -> None:
    demo_parent(kit)
    kit.create(demo_canary(25))
    kit.wait_phase("Serving", timeout=60)
    rule = f"ApisixRoute/{kit.ns}/web/main"
    wait_backend(sandbox, rule, split(25, 3))
    kit.patch("web", {"match": {"headers": [{"name": "X-Canary", "value": "yes"}]}})
    gateway, host = sandbox.status()["gateway"], sandbox_host("web", kit.ns)

    def probe(n: int, *headers: tuple[str, str]) -> Any:
        settings = ProbeSettings(
            url=gateway + "/",
            headers=(("Host", host), *headers),
            max_requests=n,
            connections=8,
            duration=600,
        )
        return asyncio.run(Probe(settings).run())

    # The controller's managed match route (a copy with the same hosts) takes over.
    wait_for(
        lambda: probe(50, ("X-Canary", "yes")).summary()["by_version"] == {"v2": 50},
        30,
        interval=0.5,
        what="header traffic all on the canary",
    )
    with_header = probe(2000, ("X-Canary", "yes")).summary()
    assert with_header["by_version"] == {"v2": 2000}
    others = probe(4000, ("X-Canary", "no")).summary()
    assert others["failed_total"] == 0
    share = 100 * others["by_version"].get("v2", 0) / others["total"]
    assert abs(share - 25) <= 2.0, others
