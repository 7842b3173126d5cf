"""APISIX subset mode against the real APISIX CRDs in the sandbox (issue 15).

One canary, ``trafficRouter.apisix.mode: subset``, on a parent whose ApisixUpstream
already exists (with a field and a subset of its own):

- create → shift 5/25/50: no canary Service, the upstream carries original/canary,
  and real traffic through the gateway splits within ±1 pp of the weight;
- a header match sends matching requests to the canary subset;
- replace under RATE (600) requests/s: zero failed requests;
- delete: the ApisixRoute and the ApisixUpstream are as they were, field for field.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from tests.helpers import wait_for
from tests.integration.controller_kit import APISIX, Kit, canary
from tests.integration.test_dataplane_controller import (
    assert_no_failures,
    last_seconds,
    split,
    under_load,
)
from tests.integration.test_dataplane_helpers import demo_deployment, wait_backend

pytestmark = pytest.mark.integration

SAMPLE = 4000
"""Requests per weight step: the gateway's weighted round robin is deterministic, so
this many put the measured share well inside ±1 pp."""
UPSTREAM = ("apisix.apache.org", "v2", "apisixupstreams")


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:
    return Kit(api_client, namespace)


def kept(obj: dict[str, Any] | None) -> str:
    """What must be restored exactly: labels, annotations and spec, as canonical JSON."""
    assert obj is not None
    meta = obj["metadata"]
    body = {k: meta.get(k) for k in ("labels", "annotations")}
    return json.dumps({"metadata": body, "spec": obj["spec"]}, sort_keys=True)


def setup(kit: Kit) -> None:
    labels = {"app": "web"}
    body = demo_deployment("web", "v1", replicas=2, env={"DEMO_MESSAGE": "hello world"})
    body["metadata"]["labels"] = dict(labels)
    body["spec"]["selector"] = {"matchLabels": dict(labels)}
    body["spec"]["template"]["metadata"]["labels"] = {**labels, "canarylab.io/version": "v1"}
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
        "metadata": {"name": "web", "labels": {"team": "a"}},
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
    upstream = {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixUpstream",
        "metadata": {"name": "web", "annotations": {"owner": "team-a"}},
        "spec": {"retries": 2, "subsets": [{"name": "blue", "labels": {"colour": "blue"}}]},
    }
    kit.custom.create_namespaced_custom_object(*UPSTREAM[:2], kit.ns, UPSTREAM[2], upstream)


def subset_canary(weight: int) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "web", "canarylab.io/version": "v2"}},
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
    body = canary("web", "web", "apisix", "web", weight=weight, template=template)
    body["spec"]["trafficRouter"]["apisix"]["mode"] = "subset"
    return body


def get_route(kit: Kit) -> dict[str, Any] | None:
    return kit.get_route("apisix")


def get_upstream(kit: Kit) -> dict[str, Any]:
    return dict(kit.custom.get_namespaced_custom_object(*UPSTREAM[:2], kit.ns, UPSTREAM[2], "web"))


def subset_weights(kit: Kit) -> dict[str, Any]:
    route = get_route(kit)
    assert route is not None
    return {b.get("subset"): b.get("weight") for b in route["spec"]["http"][0]["backends"]}


def sample(gateway: str, host: str, n: int, *headers: tuple[str, str]) -> dict[str, int]:
    settings = ProbeSettings(
        url=gateway + "/",
        headers=(("Host", host), *headers),
        max_requests=n,
        connections=16,
        duration=600,
    )
    result = asyncio.run(Probe(settings).run())
    assert result.summary()["failed_total"] == 0, result.summary()
    return dict(result.summary()["by_version"])


def test_subset_mode_create_shift_replace_delete(kit: Kit, sandbox: Any) -> None:
    setup(kit)
    route_before, upstream_before = kept(get_route(kit)), kept(get_upstream(kit))
    gateway, host = sandbox.status()["gateway"], sandbox_host("web", kit.ns)
    rule = f"ApisixRoute/{kit.ns}/web/main"

    kit.create(subset_canary(5))
    kit.wait_phase("Serving", timeout=90)
    assert "web-canary" not in kit.services(), "subset mode creates no canary Service"
    subsets = {s["name"]: s["labels"] for s in get_upstream(kit)["spec"]["subsets"]}
    assert subsets == {
        "blue": {"colour": "blue"},
        "original": {"app": "web", "canarylab.io/version": "v1"},
        "canary": {"canarylab.io/canary": "web", "canarylab.io/version": "v2"},
    }
    assert get_upstream(kit)["spec"]["retries"] == 2
    backends = get_route(kit)["spec"]["http"][0]["backends"]  # type: ignore[index]
    assert [(b["serviceName"], b.get("subset"), b["weight"]) for b in backends] == [
        ("web", "original", 95),
        ("web", "canary", 5),
    ]

    measured = {}
    for weight in (5, 25, 50):
        if weight != 5:
            kit.patch("web", {"weight": weight})
        want = {"original": 100 - weight, "canary": weight}
        wait_for(lambda w=want: subset_weights(kit) == w, 60, what=f"route weights {want}")
        wait_backend(sandbox, rule, split(weight, 3))
        counts = sample(gateway, host, SAMPLE)
        share = 100 * counts.get("v2", 0) / sum(counts.values())
        measured[weight] = round(share, 2)
        assert abs(share - weight) <= 1, (weight, counts)
    print(f"subset mode: measured canary share by weight {measured} ({SAMPLE} requests each)")

    kit.patch("web", {"match": {"headers": [{"name": "X-Canary", "value": "yes"}]}})
    wait_for(
        lambda: sample(gateway, host, 50, ("X-Canary", "yes")) == {"v2": 50},
        60,
        what="header traffic on the canary subset",
    )
    kit.patch("web", {"match": None})
    wait_for(lambda: not kit.managed_routes("apisix"), 60, what="match route gone")

    def replace() -> None:
        kit.patch("web", {"replace": True})
        kit.wait_phase("Replaced", timeout=180)
        wait_for(lambda: "web-canary" not in kit.deployments(), 60, what="canary Deployment gone")
        wait_backend(sandbox, rule, lambda b: len(b["servers"]) == 2, timeout=120)

    result = asyncio.run(under_load(gateway, host, replace))
    print(f"subset replace under load: {result.summary()}")
    assert_no_failures(result)
    assert set(last_seconds(result, 1)["version"]) == {"v2"}

    kit.delete()
    kit.wait_gone(timeout=60)
    assert kept(get_route(kit)) == route_before
    assert kept(get_upstream(kit)) == upstream_before


def test_subset_mode_refuses_an_unlabelled_parent(kit: Kit) -> None:
    parent = kit.parent()  # pods labelled app=web only: no canarylab.io/version
    assert "canarylab.io/version" not in parent["spec"]["template"]["metadata"]["labels"]
    kit.route("apisix")
    before = copy.deepcopy(kept(get_route(kit)))
    kit.create(subset_canary(10))
    status = kit.wait_reason("ParentVersionUnlabelled", timeout=60)
    assert "canarylab.io/version" in status["message"], status
    assert kept(get_route(kit)) == before  # nothing was written
    assert "web-canary" not in kit.services()
