"""Demo-app Pods → processes → endpoints and Pod status; the watch cache's bookkeeping."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import httpx
import pytest

from canarylab.dataplane.pods import PodReporter, readiness_patch
from canarylab.dataplane.watch import ClusterView, Gone, ObjectCache, WatchedKind
from canarylab.dataplane.workloads import demo_pods, service_endpoints


def pod(
    name: str,
    image: str = "canarylab/demo:v1",
    labels: dict[str, str] | None = None,
    *,
    node: str | None = "canarylab-node-0",
    phase: str = "Running",
    ready: str | None = "False",
    deleting: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "demo",
        "uid": uid or f"uid-{name}",
        "resourceVersion": "7",
        "labels": labels or {"app": "web"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
        meta["deletionGracePeriodSeconds"] = 5
    spec: dict[str, Any] = {
        "containers": [
            {"name": "app", "image": image, "env": [{"name": "DEMO_MESSAGE", "value": "hi"}]}
        ]
    }
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": [{"name": "app", "image": image, "ready": False, "restartCount": 0}],
    }
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {"metadata": meta, "spec": spec, "status": status}


def test_only_scheduled_demo_image_pods_get_processes():
    pods = demo_pods(
        [
            pod("web-1"),
            pod("nginx", image="nginx:1.25"),
            pod("pending", node=None, phase="Pending"),
            pod("done", phase="Succeeded"),
            pod("going", deleting=True),
        ]
    )
    assert [(p.name, p.tag, p.terminating) for p in pods] == [
        ("web-1", "v1", False),
        ("going", "v1", True),
    ]
    first, going = pods
    assert first.env == (("DEMO_MESSAGE", "hi"),)
    assert first.ready is False
    assert first.running
    assert first.containers == ("app",)
    assert first.grace == 30
    assert going.grace == 5


def test_services_select_ready_pods_that_are_not_being_deleted():
    pods = demo_pods(
        [
            pod("web-1", labels={"app": "web", "track": "stable"}),
            pod("web-2", labels={"app": "web", "track": "canary"}),
            pod("web-3", labels={"app": "web", "track": "stable"}),  # process not ready
            pod("web-4", labels={"app": "web", "track": "stable"}, deleting=True),
        ]
    )
    services = [
        {"metadata": {"name": "all", "namespace": "demo"}, "spec": {"selector": {"app": "web"}}},
        {
            "metadata": {"name": "canary", "namespace": "demo"},
            "spec": {"selector": {"track": "canary"}},
        },
        {"metadata": {"name": "none", "namespace": "demo"}, "spec": {}},
    ]
    ready = {
        "uid-web-1": ("127.0.0.2", 1),
        "uid-web-2": ("127.0.0.3", 2),
        "uid-web-4": ("127.0.0.4", 4),
    }
    endpoints = service_endpoints(services, pods, ready)
    assert endpoints[("demo", "all")] == [("127.0.0.2", 1), ("127.0.0.3", 2)]
    assert endpoints[("demo", "canary")] == [("127.0.0.3", 2)]
    assert endpoints[("demo", "none")] == []


def test_readiness_patch_sets_both_conditions_and_the_containers():
    (p,) = demo_pods([pod("web-1")])
    now = datetime.datetime(2026, 12, 2, 10, 0, 1, tzinfo=datetime.UTC)
    body = readiness_patch(p, True, now)
    assert body["status"]["conditions"] == [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T10:00:01Z"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-02T10:00:01Z"},
    ]
    assert body["status"]["containerStatuses"] == [
        {"name": "app", "image": "canarylab/demo:v1", "ready": True, "restartCount": 0}
    ]
    off = readiness_patch(p, False, now)["status"]["conditions"][0]
    assert off["status"] == "False"
    assert off["reason"] == "ContainersNotReady"


def recording_client(sent: list[httpx.Request]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    return httpx.AsyncClient(base_url="https://api", transport=httpx.MockTransport(handle))


def test_reporter_writes_ready_once_and_only_for_started_pods():
    pods = demo_pods(
        [
            pod("served"),
            pod("slow"),  # its process is not ready yet: already False, nothing to write
            pod("pending", phase="Pending", ready=None),  # kwok has not started it
            pod("crashed", ready="True"),  # its process went away
        ]
    )
    sent: list[httpx.Request] = []

    async def twice() -> None:
        async with recording_client(sent) as client:
            reporter = PodReporter()
            for _ in range(2):  # the watch has not shown the first write yet
                await reporter.sync(client, pods, {"uid-served", "uid-pending"}, lambda u: True)

    asyncio.run(twice())
    written = {(r.method, r.url.path): json.loads(r.content) for r in sent}
    assert len(sent) == 2
    served = written[("PATCH", "/api/v1/namespaces/demo/pods/served/status")]
    assert served["status"]["conditions"][0]["status"] == "True"
    crashed = written[("PATCH", "/api/v1/namespaces/demo/pods/crashed/status")]
    assert crashed["status"]["conditions"][0]["status"] == "False"
    assert sent[0].headers["content-type"] == "application/strategic-merge-patch+json"


def test_reporter_completes_deletion_only_after_the_process_exited():
    pods = demo_pods([pod("going", deleting=True)])
    sent: list[httpx.Request] = []

    async def run() -> None:
        async with recording_client(sent) as client:
            reporter = PodReporter()
            await reporter.sync(client, pods, set(), lambda uid: True)  # still draining
            assert sent == []
            await reporter.sync(client, pods, set(), lambda uid: False)
            await reporter.sync(client, pods, set(), lambda uid: False)  # not repeated

    asyncio.run(run())
    assert [(r.method, r.url.path) for r in sent] == [
        ("DELETE", "/api/v1/namespaces/demo/pods/going")
    ]
    assert json.loads(sent[0].content) == {
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-going"},
    }


# ------------------------------------------------------------------ watch
def test_cache_follows_added_modified_deleted_and_bookmarks():
    changes: list[int] = []
    cache = ObjectCache(WatchedKind("pods", "/api/v1/pods"), lambda: changes.append(1))
    a = {"metadata": {"namespace": "demo", "name": "a", "resourceVersion": "5"}}
    b = {"metadata": {"namespace": "demo", "name": "b", "resourceVersion": "6"}}
    assert cache._apply({"type": "ADDED", "object": a}, "4") == "5"
    assert cache._apply({"type": "ADDED", "object": b}, "5") == "6"
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    assert cache._apply(bookmark, "6") == "9"
    a2 = {"metadata": {"namespace": "demo", "name": "a", "resourceVersion": "10"}, "x": 1}
    cache._apply({"type": "MODIFIED", "object": a2}, "9")
    cache._apply({"type": "DELETED", "object": b}, "10")
    assert cache.items() == [a2]
    assert len(changes) == 4  # a bookmark changes nothing
    with pytest.raises(Gone):
        cache._apply({"type": "ERROR", "object": {"code": 410}}, "10")


def test_view_lists_once_then_watches_and_treats_a_missing_crd_as_empty():
    requests: list[tuple[str, bool]] = []
    pods = {"metadata": {"namespace": "demo", "name": "a", "resourceVersion": "3"}}

    def handle(request: httpx.Request) -> httpx.Response:
        watching = request.url.params.get("watch") == "1"
        requests.append((request.url.path, watching))
        if request.url.path.startswith("/apis/example.io"):
            return httpx.Response(404, json={})
        if not watching:
            items = [pods] if request.url.path == "/api/v1/pods" else []
            return httpx.Response(200, json={"metadata": {"resourceVersion": "3"}, "items": items})
        return httpx.Response(200, content=b"")  # a watch that ends at once

    kinds = [
        WatchedKind("pods", "/api/v1/pods"),
        WatchedKind("things", "/apis/example.io/v1/things", "things.example.io"),
    ]
    changed = asyncio.Event()

    async def run() -> dict[str, list[dict[str, Any]]]:
        view = ClusterView(kinds, changed.set)
        client = httpx.AsyncClient(base_url="https://api", transport=httpx.MockTransport(handle))
        async with client:
            task = asyncio.create_task(view.run(client))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if view.synced and len([r for r in requests if r[1]]) >= 2:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return view.snapshot()

    snapshot = asyncio.run(run())
    assert snapshot == {"pods": [pods], "things": []}
    assert changed.is_set()
    lists = [path for path, watching in requests if not watching]
    # One list of each kind, plus the CRDs; the missing kind waits for a CRD event.
    assert sorted(set(lists)) == [
        "/api/v1/pods",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "/apis/example.io/v1/things",
    ]
    assert lists.count("/api/v1/pods") == 1
