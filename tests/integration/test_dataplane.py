"""Acceptance of the sandbox data plane: real demo-app processes behind a real HAProxy,
programmed from real ApisixRoute/HTTPRoute objects, measured by the real probe.

Routes are written directly here; the controller-driven versions live with the
controller's tests.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from tests.helpers import install_crds, wait_for
from tests.integration.test_dataplane_helpers import (
    APISIX,
    HTTPROUTE,
    apisix_route,
    assert_served_load,
    backend,
    create_app,
    demo_deployment,
    servers_with,
    wait_backend,
)

pytestmark = pytest.mark.integration

SPLIT_REQUESTS = 20_000


@pytest.fixture(scope="session")
def route_crds(api_client, shared_crds):  # type: ignore[no-untyped-def]
    files = sorted((shared_crds / "apisix").glob("*.yaml")) + sorted(
        (shared_crds / "gateway-api").glob("*.yaml")
    )
    return install_crds(api_client, files)


@pytest.fixture
def gateway(sandbox) -> str:  # type: ignore[no-untyped-def]
    url = sandbox.status()["gateway"]
    assert url, "the sandbox did not report a gateway URL"
    return str(url)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_route(
    api: client.ApiClient, namespace: str, kind: tuple[str, str, str], body: Any
) -> None:
    group, version, plural = kind
    custom(api).create_namespaced_custom_object(group, version, namespace, plural, body)


def set_canary_weight(api: client.ApiClient, namespace: str, route: str, weight: int) -> None:
    group, version, plural = APISIX
    current = custom(api).get_namespaced_custom_object(group, version, namespace, plural, route)
    for rule in current["spec"]["http"]:
        if rule["name"] == "main":
            rule["backends"][0]["weight"] = 100 - weight
            rule["backends"][1]["weight"] = weight
    custom(api).replace_namespaced_custom_object(group, version, namespace, plural, route, current)


def run_probe(gateway: str, host: str, **settings: Any) -> Any:
    """Probe the gateway as ``host``; a request count, not a clock, ends the run."""
    headers = (("Host", host), *settings.pop("headers", ()))
    if "max_requests" in settings:
        settings.setdefault("duration", 600)
    return asyncio.run(Probe(ProbeSettings(url=gateway + "/", headers=headers, **settings)).run())


def canary_share_matches(weight: int, servers: int = 3) -> Any:
    """Backend check: ``servers`` servers, one of which (the canary) has a share of the
    total server weight equal to ``weight`` within 0.5 pp."""

    count = servers

    def check(item: dict[str, Any]) -> bool:
        servers = item["servers"]
        if len(servers) != count:
            return False
        total = sum(s["weight"] for s in servers)
        canary = [s["weight"] for s in servers if s["weight"]]
        return total > 0 and any(abs(w / total - weight / 100) < 0.005 for w in canary)

    return check


async def under_load(gateway: str, host: str, scenario: Any, rate: int = 600) -> Any:
    """Run ``scenario`` (blocking) in a thread while the probe sends ``rate``/s through the
    gateway as ``host``; the probe starts 2 s before it and stops 2 s after it."""
    probe = Probe(
        ProbeSettings(
            url=gateway + "/", headers=(("Host", host),), duration=300, rate=rate, connections=64
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


def failures(result: Any) -> dict[str, Any]:
    """What failed, for assertion messages: the summary and failed requests by status."""
    bad = result.requests[result.requests["error"].notna()]
    return {
        "summary": result.summary(),
        "statuses": bad["status"].value_counts().to_dict(),
        "first_failure_t": float(bad["t"].min()) if len(bad) else None,
    }


# ------------------------------------------------------------------ tests
def test_sandbox_reports_gateway_and_data_plane_processes(sandbox, gateway):
    info = sandbox.status()
    names = {c["name"]: c for c in info["components"]}
    assert names["haproxy"]["alive"]
    assert names["dataplane"]["alive"]
    assert gateway.startswith("http://127.0.0.1:")
    # An unknown sandbox host gets a 404 (it never falls through to a catch-all route).
    result = run_probe(gateway, "nothing.nowhere.sandbox", max_requests=5, connections=1)
    assert set(result.requests["status"]) == {404}


def test_httproute_serves_demo_app_with_version_header(
    api_client, namespace, route_crds, sandbox, gateway
):
    create_app(api_client, namespace, stable_replicas=1, canary_replicas=1)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
    }
    create_route(api_client, namespace, HTTPROUTE, route)
    wait_backend(sandbox, f"HTTPRoute/{namespace}/web/0", servers_with(1, 1))
    result = run_probe(
        gateway,
        sandbox_host("web", namespace),
        max_requests=200,
        connections=4,
        body_regex=r"^hello world \(version (\w+)\)",
    )
    assert result.summary()["by_version"] == {"v1": 200}
    assert result.failed == 0


def test_weights_5_25_50_are_honoured_within_one_point(
    api_client, namespace, route_crds, sandbox, gateway
):
    create_app(api_client, namespace, stable_replicas=2, canary_replicas=1)
    create_route(api_client, namespace, APISIX, apisix_route("web", 5))
    rule = f"ApisixRoute/{namespace}/web/main"
    host = sandbox_host("web", namespace)
    wait_backend(sandbox, rule, canary_share_matches(5))
    observed = {}
    for weight in (5, 25, 50):
        set_canary_weight(api_client, namespace, "web", weight)
        wait_backend(sandbox, rule, canary_share_matches(weight))
        result = run_probe(gateway, host, max_requests=SPLIT_REQUESTS, connections=20)
        summary = result.summary()
        assert summary["total"] >= SPLIT_REQUESTS
        assert summary["failed_total"] == 0, failures(result)
        observed[weight] = 100 * summary["by_version"].get("v2", 0) / summary["total"]
    print("observed canary share by weight:", observed)
    for weight, share in observed.items():
        assert abs(share - weight) <= 1.0, observed


def test_match_route_sends_header_traffic_to_canary(
    api_client, namespace, route_crds, sandbox, gateway
):
    create_app(api_client, namespace, stable_replicas=1, canary_replicas=1)
    header_rule = {
        "name": "canary-by-header",
        "priority": 1,
        "match": {
            "paths": ["/*"],
            "exprs": [
                {
                    "subject": {"scope": "Header", "name": "X-Canary"},
                    "op": "Equal",
                    "value": "always",
                }
            ],
        },
        "backends": [{"serviceName": "web-canary", "servicePort": 80, "weight": 100}],
    }
    cookie_rule = {
        "name": "canary-by-cookie",
        "priority": 1,
        "match": {
            "paths": ["/*"],
            "exprs": [
                {
                    "subject": {"scope": "Cookie", "name": "canary"},
                    "op": "RegexMatch",
                    "value": "^y",
                }
            ],
        },
        "backends": [{"serviceName": "web-canary", "servicePort": 80, "weight": 100}],
    }
    elsewhere_rule = {
        "name": "from-elsewhere",
        "priority": 2,
        "match": {"paths": ["/*"], "remoteAddrs": ["10.0.0.0/8"]},
        "backends": [{"serviceName": "web-canary", "servicePort": 80, "weight": 100}],
    }
    route = apisix_route("web", 25, [header_rule, cookie_rule, elsewhere_rule])
    create_route(api_client, namespace, APISIX, route)
    wait_backend(sandbox, f"ApisixRoute/{namespace}/web/main", canary_share_matches(25, 2))
    wait_backend(sandbox, f"ApisixRoute/{namespace}/web/canary-by-header", servers_with(1, 1))
    host = sandbox_host("web", namespace)

    with_header = run_probe(gateway, host, max_requests=2000, headers=(("X-Canary", "always"),))
    assert with_header.summary()["by_version"] == {"v2": 2000}
    with_cookie = run_probe(gateway, host, max_requests=500, headers=(("Cookie", "canary=yes"),))
    assert with_cookie.summary()["by_version"] == {"v2": 500}

    # Others (wrong header value; loopback is not in 10.0.0.0/8) stay split 75/25.
    others = run_probe(gateway, host, max_requests=4000, headers=(("X-Canary", "never"),))
    summary = others.summary()
    assert summary["failed_total"] == 0
    share = 100 * summary["by_version"]["v2"] / summary["total"]
    assert abs(share - 25) <= 2.0, summary


def test_template_change_under_load_has_zero_failures(
    api_client, namespace, route_crds, sandbox, gateway
):
    create_app(api_client, namespace, stable_replicas=2, canary_replicas=1)
    create_route(api_client, namespace, APISIX, apisix_route("web", 50))
    rule = f"ApisixRoute/{namespace}/web/main"
    before = wait_backend(sandbox, rule, canary_share_matches(50))
    host = sandbox_host("web", namespace)
    apps = client.AppsV1Api(api_client)

    old_ports = {s["port"] for s in before["servers"]}

    def rolled(item: dict[str, Any]) -> bool:
        ports = {s["port"] for s in item["servers"]}
        return len(ports) == 3 and len(ports & old_ports) == 1  # only the canary stayed

    def roll() -> None:
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "DEMO_VERSION", "value": "v1.1"}]}
                        ]
                    }
                }
            }
        }
        apps.patch_namespaced_deployment("web", namespace, patch)
        wait_backend(sandbox, rule, rolled, timeout=120)

    async def scenario() -> Any:
        return await under_load(gateway, host, roll)

    result = asyncio.run(scenario())
    summary = result.summary()
    print(summary)
    assert summary["failed_total"] == 0, failures(result)
    # The rollout finished during the run: the last second has only the new stable version.
    last = result.samples[result.samples["second"] == result.samples["second"].max()]
    assert set(last["version"]) <= {"v1.1", "v2"}
    assert "v1.1" in set(last["version"])
    after = backend(sandbox, rule)
    assert after is not None
    assert rolled(after)
    assert_served_load(result)


def test_deleting_canary_after_weight_zero_has_zero_failures(
    api_client, namespace, route_crds, sandbox, gateway
):
    create_app(api_client, namespace, stable_replicas=1, canary_replicas=1)
    create_route(api_client, namespace, APISIX, apisix_route("web", 50))
    rule = f"ApisixRoute/{namespace}/web/main"
    wait_backend(sandbox, rule, canary_share_matches(50, 2))
    host = sandbox_host("web", namespace)
    apps = client.AppsV1Api(api_client)

    def weight_zero_then_delete() -> None:
        set_canary_weight(api_client, namespace, "web", 0)
        wait_backend(sandbox, rule, servers_with(2, 1))
        time.sleep(1)
        apps.delete_namespaced_deployment("web-canary", namespace)
        wait_backend(sandbox, rule, servers_with(1, 1))

    async def scenario() -> Any:
        return await under_load(gateway, host, weight_zero_then_delete)

    result = asyncio.run(scenario())
    summary = result.summary()
    assert summary["failed_total"] == 0, failures(result)
    last_seconds = result.samples[
        result.samples["second"] >= result.samples["second"].max() - pd_seconds(1)
    ]
    assert set(last_seconds["version"]) == {"v1"}
    assert_served_load(result)


def pd_seconds(n: int) -> Any:
    import pandas as pd

    return pd.Timedelta(seconds=n)


def plain_get(url: str, host: str | None = None) -> tuple[int, str]:
    """One plain HTTP GET, as curl would send it (Host: 127.0.0.1:PORT unless given)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_routes_without_hosts_serve_plain_http_like_apisix(
    api_client, namespace, route_crds, sandbox, gateway
):
    """No Host header games: an ApisixRoute rule without ``hosts`` and an HTTPRoute
    without ``hostnames`` answer a plain request; exact paths beat prefixes and a longer
    prefix beats a higher priority, as in APISIX."""
    create_app(api_client, namespace, stable_replicas=1, canary_replicas=1)
    base = f"/plain-{namespace}"  # paths of our own: other tests' catch-alls are shorter
    route = {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": "plain"},
        "spec": {
            "http": [
                {
                    "name": "prefix",
                    "match": {"paths": [f"{base}/*"]},
                    "backends": [{"serviceName": "web", "servicePort": 80}],
                },
                {
                    "name": "exact",
                    "priority": -1,
                    "match": {"paths": [f"{base}/exact"]},
                    "backends": [{"serviceName": "web-canary", "servicePort": 80}],
                },
                {
                    "name": "loud",
                    "priority": 50,
                    "match": {"paths": [f"{base}*"]},
                    "backends": [{"serviceName": "web-canary", "servicePort": 80}],
                },
            ]
        },
    }
    httproute = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "plain-gw"},
        "spec": {
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/gw-{namespace}"}}],
                    "backendRefs": [{"name": "web-canary", "port": 80}],
                }
            ]
        },
    }
    create_route(api_client, namespace, APISIX, route)
    create_route(api_client, namespace, HTTPROUTE, httproute)
    for rule in ("prefix", "exact", "loud"):
        wait_backend(sandbox, f"ApisixRoute/{namespace}/plain/{rule}", servers_with(1, 1))
    wait_backend(sandbox, f"HTTPRoute/{namespace}/plain-gw/0", servers_with(1, 1))

    assert plain_get(f"{gateway}{base}/x") == (200, "hello world (version v1)\n")
    assert plain_get(f"{gateway}{base}/exact") == (200, "hello Hongbo (version v2)\n")
    assert plain_get(f"{gateway}{base}-other") == (200, "hello Hongbo (version v2)\n")
    assert plain_get(f"{gateway}/gw-{namespace}/y", host="shop.example.com") == (
        200,
        "hello Hongbo (version v2)\n",
    )
    # The route's own sandbox host still reaches it, and a sandbox host of no route
    # is never served by a catch-all.
    assert plain_get(f"{gateway}{base}/x", host=sandbox_host("plain", namespace))[0] == 200
    assert plain_get(f"{gateway}{base}/x", host="nothing.nowhere.sandbox")[0] == 404


def test_pod_is_not_ready_before_its_process_serves(api_client, namespace, sandbox):
    """Readiness comes from the process: a demo app that starts listening 4 s late keeps
    its Pod Running but not Ready (and its Deployment unavailable) until /readyz answers;
    a deleted Pod is gone only after its process has stopped."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    body = demo_deployment("slow", "v1", 1, app="slow", env={"DEMO_START_DELAY_MS": "4000"})
    apps.create_namespaced_deployment(namespace, body)

    def the_pod() -> Any:
        found = core.list_namespaced_pod(namespace, label_selector="app=slow").items
        return found[0] if found else None

    def ready(pod: Any) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())

    running = wait_for(
        lambda: (p := the_pod()) is not None and p.status.phase == "Running" and p,
        60,
        what="the Pod Running",
    )
    assert not ready(running), "kwok must not make a demo-app Pod Ready on a timer"
    assert apps.read_namespaced_deployment(
        namespace=namespace, name="slow"
    ).status.available_replicas in (None, 0)
    # The process starts listening 4 s after its start: the Pod becomes Ready after that.
    served = wait_for(lambda: (p := the_pod()) is not None and ready(p) and p, 60, what="Ready")
    became_ready = next(c for c in served.status.conditions if c.type == "Ready")
    assert (became_ready.last_transition_time - served.status.start_time).total_seconds() >= 2
    wait_for(
        lambda: (
            apps.read_namespaced_deployment(
                namespace=namespace, name="slow"
            ).status.available_replicas
            == 1
        ),
        30,
        what="the Deployment available",
    )
    # The rollout-finished test (as kubectl rollout status does it) now holds.
    dep = apps.read_namespaced_deployment(namespace=namespace, name="slow")
    assert dep.status.updated_replicas == dep.status.replicas == dep.status.available_replicas == 1

    name = served.metadata.name
    core.delete_namespaced_pod(name, namespace)
    wait_for(
        lambda: name not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items},
        30,
        what="the deleted Pod removed once its process stopped",
    )
