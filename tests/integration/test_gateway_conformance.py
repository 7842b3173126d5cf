"""Gateway API conformance of canarylab's router against a real gateway (Traefik).

The routes are edited by the gatewayAPI router's own pure functions (``with_split``,
``match_route``, ``restored``) and served by Traefik v3.6.12, which finds the demo-app
processes through the data plane's EndpointSlices (one 127.0.0.N per process). Nothing
here reads canarylab's HAProxy translation: requests, status and shares all come from
the real gateway.

Traefik is started for this module unless the sandbox already runs one
(``CANARYLAB_SANDBOX_GATEWAY=traefik``). Its cold build takes longer than pytest's
per-test timeout, so the module skips until ``python -m canarylab.sandbox.traefik`` has
built it once (docs/sandbox.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from canarylab.model.spec import Match, TrafficSplit, ValueMatch
from canarylab.routers import gatewayapi
from canarylab.routers.base import Owner
from canarylab.sandbox import procs, traefik
from tests.helpers import install_crds, wait_for
from tests.integration.test_dataplane import failures, run_probe
from tests.integration.test_dataplane_helpers import HTTPROUTE, create_app

pytestmark = pytest.mark.integration

SPLIT_REQUESTS = 20_000
GROUP, VERSION, PLURAL = HTTPROUTE


@pytest.fixture(scope="module")
def real_gateway(sandbox, api_client, shared_crds) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The URL of a Traefik serving the sandbox's Gateway."""
    if not traefik.is_built() and not traefik.wanted():
        # Its cold build takes far longer than pytest's per-test timeout.
        pytest.skip(
            "Traefik is not built yet: run `python -m canarylab.sandbox.traefik` once "
            "(a cold build of ~2,100 Go packages) or set CANARYLAB_SANDBOX_GATEWAY=traefik"
        )
    install_crds(api_client, sorted((shared_crds / "gateway-api").glob("*.yaml")))
    running = sandbox.status().get("gateway_api")
    if running:
        yield str(running)
        return
    port = procs.free_port()
    record = traefik.start(
        server=sandbox.server,
        pki_dir=sandbox.pki_dir,
        kubeconfig=sandbox.kubeconfig,
        log_dir=sandbox.log_dir,
        port=port,
        progress=lambda message: print(f"[traefik] {message}"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(record)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def get_route(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def replace_route(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    custom(api).replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)


def base_route(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [traefik.parent_ref()],
            # A hostname per namespace: tests that share the gateway never collide.
            "hostnames": [host_of(namespace)],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    }


def host_of(namespace: str) -> str:
    return f"web.{namespace}.example"


def owner_of(namespace: str) -> Owner:
    return Owner(name="web", uid="00000000-0000-0000-0000-000000000013", namespace=namespace)


def conditions(route: dict[str, Any]) -> dict[str, str]:
    """Condition type → status that Traefik wrote for the route's current generation."""
    generation = route["metadata"].get("generation")
    out: dict[str, str] = {}
    for parent in (route.get("status") or {}).get("parents") or []:
        if parent.get("controllerName") != traefik.CONTROLLER_NAME:
            continue
        for c in parent.get("conditions") or []:
            if c.get("observedGeneration") == generation:
                out[c["type"]] = c["status"]
    return out


def wait_accepted(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    def accepted() -> dict[str, Any] | None:
        route = get_route(api, namespace, name)
        found = conditions(route)
        ok = found.get("Accepted") == "True" and found.get("ResolvedRefs") == "True"
        return route if ok else None

    return wait_for(accepted, 90, what=f"Traefik to accept HTTPRoute {namespace}/{name}")


def measure(gateway: str, namespace: str, requests: int, **settings: Any) -> Any:
    return run_probe(gateway, host_of(namespace), max_requests=requests, **settings)


def canary_share(gateway: str, namespace: str, requests: int, **settings: Any) -> float:
    """The canary's share in percent of ``requests`` requests, none of which may fail."""
    result = measure(gateway, namespace, requests, **settings)
    summary = result.summary()
    assert summary["failed_total"] == 0, failures(result)
    return 100 * summary["by_version"].get("v2", 0) / summary["total"]


def shows_share(gateway: str, namespace: str, share: float, requests: int, **settings: Any) -> bool:
    """Whether ``requests`` requests all succeed with the canary at ``share`` ± 1 point
    (while Traefik has not caught up, some get 404 or the old share: not yet)."""
    summary = measure(gateway, namespace, requests, **settings).summary()
    if summary["failed_total"] or not summary["total"]:
        return False
    return abs(100 * summary["by_version"].get("v2", 0) / summary["total"] - share) <= 1.0


def set_split(api: client.ApiClient, namespace: str, canary: int) -> None:
    route = get_route(api, namespace, "web")
    split = TrafficSplit(parent=100 - canary, canary=canary)
    updated = gatewayapi.with_split(route, owner_of(namespace), {}, frozenset({"web"}), split)
    replace_route(api, namespace, updated)


def wait_share(gateway: str, namespace: str, canary: int) -> None:
    """Until Traefik applies ``canary``: its weighted round-robin is deterministic, so 200
    requests show the new share to within a point once it is live."""
    wait_for(
        lambda: shows_share(gateway, namespace, canary, 200, connections=1),
        90,
        interval=0.5,
        what=f"Traefik to apply a {canary}% canary weight",
    )


def serve_web(api: client.ApiClient, namespace: str, gateway: str, **app: int) -> None:
    create_app(api, namespace, **app)
    custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, base_route(namespace)
    )
    wait_accepted(api, namespace, "web")
    wait_share(gateway, namespace, 0)  # the stable processes answer through Traefik


# ------------------------------------------------------------------ tests
def test_route_status_from_the_gateway_is_accepted_and_resolved(
    api_client, namespace, real_gateway
):
    serve_web(api_client, namespace, real_gateway, stable_replicas=1, canary_replicas=1)
    route = wait_accepted(api_client, namespace, "web")
    (parent,) = [
        p for p in route["status"]["parents"] if p["controllerName"] == traefik.CONTROLLER_NAME
    ]
    assert parent["parentRef"]["name"] == traefik.GATEWAY_NAME
    assert conditions(route) == {"Accepted": "True", "ResolvedRefs": "True"}


def test_weights_5_25_50_split_real_requests_within_one_point(api_client, namespace, real_gateway):
    serve_web(api_client, namespace, real_gateway, stable_replicas=2, canary_replicas=1)
    observed = {}
    for weight in (5, 25, 50):
        set_split(api_client, namespace, weight)
        wait_accepted(api_client, namespace, "web")
        wait_share(real_gateway, namespace, weight)
        observed[weight] = canary_share(real_gateway, namespace, SPLIT_REQUESTS, connections=20)
    print("observed canary share through Traefik by weight:", observed)
    for weight, share in observed.items():
        assert abs(share - weight) <= 1.0, observed


@pytest.mark.parametrize(
    ("match", "headers"),
    [
        (Match(headers=(ValueMatch("X-Canary", "always"),)), (("X-Canary", "always"),)),
        (Match(cookies=(ValueMatch("canary", "yes"),)), (("Cookie", "a=b; canary=yes"),)),
    ],
    ids=["header", "cookie"],
)
def test_match_canary_reaches_only_the_canary_and_delete_restores(
    api_client, namespace, real_gateway, match, headers
):
    serve_web(api_client, namespace, real_gateway, stable_replicas=1, canary_replicas=1)
    original = copy.deepcopy(get_route(api_client, namespace, "web")["spec"])
    set_split(api_client, namespace, 0)
    route = get_route(api_client, namespace, "web")
    owner = owner_of(namespace)
    targets = gatewayapi.find_targets(route, {}, frozenset({"web"}))
    managed = gatewayapi.match_route(route, owner, targets, match)
    # No CanaryDeployment exists here: without this the garbage collector would
    # delete the managed route as an orphan.
    managed["metadata"].pop("ownerReferences")
    custom(api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, managed)
    name = managed["metadata"]["name"]
    wait_accepted(api_client, namespace, name)
    wait_for(
        lambda: shows_share(real_gateway, namespace, 100, 50, headers=headers),
        90,
        interval=0.5,
        what="Traefik to serve the match route",
    )
    assert canary_share(real_gateway, namespace, 2000, headers=headers) == 100.0
    assert canary_share(real_gateway, namespace, 2000) == 0.0  # others: weight 0 canary
    assert canary_share(real_gateway, namespace, 500, headers=(("X-Canary", "never"),)) == 0.0

    # Delete: the managed route goes and the route gets its recorded backends back.
    custom(api_client).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    restored = gatewayapi.restored(get_route(api_client, namespace, "web"), owner)
    assert restored is not None
    replace_route(api_client, namespace, restored)
    wait_accepted(api_client, namespace, "web")
    assert get_route(api_client, namespace, "web")["spec"] == original
    wait_for(
        lambda: shows_share(real_gateway, namespace, 0, 200, headers=headers),
        90,
        interval=0.5,
        what="the match route to stop serving after delete",
    )
    assert canary_share(real_gateway, namespace, 1000, headers=headers) == 0.0
