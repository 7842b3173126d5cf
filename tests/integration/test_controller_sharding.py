"""Several controllers share one cluster in disjoint shards, and never act on one canary.

Sharding is how a fleet outgrows one controller (docs/operations.md, "Sharding"): by
namespace (``--namespace``) or by a label on the CanaryDeployments (``--selector``).
Each controller here runs as the deploy/ ServiceAccount; what one acted on is read
from its own metrics (every pass sets its canary's gauges) and from the routes.
The session's shared controller is stopped meanwhile: it serves every namespace.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import wait_for
from tests.integration.conftest import ControllerProcess
from tests.integration.controller_kit import Kit, canary

pytestmark = pytest.mark.integration


def served(ctl: ControllerProcess) -> set[tuple[str, str]]:
    """(namespace, name) of every canary this controller's passes reported."""
    found = set()
    for labels in re.findall(r"^canarylab_canary_weight_desired\{([^}]*)\}", ctl.metrics(), re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found.add((pairs["namespace"], pairs["name"]))
    return found


@pytest.fixture
def shared_controller_stopped(controller: ControllerProcess) -> Iterator[None]:
    controller.stop()
    try:
        yield
    finally:
        controller.start()


@pytest.fixture
def two_namespaces(api_client: Any) -> Iterator[tuple[str, str]]:
    core = client.CoreV1Api(api_client)
    names = (f"shard-a-{uuid.uuid4().hex[:6]}", f"shard-b-{uuid.uuid4().hex[:6]}")
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    yield names
    for name in names:
        core.delete_namespace(name)


def started(kubeconfig: Path, log: Path, *scope: str) -> ControllerProcess:
    ctl = ControllerProcess(kubeconfig, log, scope)
    ctl.start()
    return ctl


def test_two_namespaces_across_two_controllers(
    api_client: Any,
    controller_kubeconfig: Path,
    shared_controller_stopped: None,
    two_namespaces: tuple[str, str],
    tmp_path: Path,
) -> None:
    kits = [Kit(api_client, ns) for ns in two_namespaces]
    ctls = [
        started(controller_kubeconfig, tmp_path / f"controller-{i}.log", "--namespace", ns)
        for i, ns in enumerate(two_namespaces)
    ]
    try:
        for kit in kits:
            kit.parent()
            kit.route("apisix")
            kit.create(canary("web", "web", "apisix", "web", weight=20))
        for kit in kits:
            kit.wait_phase("Serving", timeout=60)
            kit.wait_weights("apisix", {"web": 80, "web-canary": 20})
        for kit in kits:
            kit.patch("web", {"weight": 50})
        for kit in kits:
            kit.wait_weights("apisix", {"web": 50, "web-canary": 50})
        for ctl, ns in zip(ctls, two_namespaces, strict=True):
            wait_for(lambda ctl=ctl, ns=ns: (ns, "web") in served(ctl), 20, what=f"{ns} served")
        assert served(ctls[0]) == {(two_namespaces[0], "web")}, ctls[0].tail()
        assert served(ctls[1]) == {(two_namespaces[1], "web")}, ctls[1].tail()
    finally:
        for ctl in ctls:
            ctl.stop()


def test_one_namespace_split_by_label_across_two_controllers(
    api_client: Any,
    controller_kubeconfig: Path,
    shared_controller_stopped: None,
    namespace: str,
    tmp_path: Path,
) -> None:
    kit = Kit(api_client, namespace)
    ctls = {
        shard: started(
            controller_kubeconfig,
            tmp_path / f"controller-{shard}.log",
            "--all-namespaces",
            "--selector",
            f"canarylab.io/shard={shard}",
        )
        for shard in ("a", "b")
    }
    try:
        for shard, app in (("a", "web"), ("b", "api")):
            kit.parent(app)
            kit.route("apisix", name=app, svc=app)
            body = canary(app, app, "apisix", app, weight=20)
            body["metadata"]["labels"] = {"canarylab.io/shard": shard}
            kit.create(body)
        # neither shard's label: nobody serves it, and nobody writes to it
        kit.parent("orphan")
        kit.route("apisix", name="orphan", svc="orphan")
        kit.create(canary("orphan", "orphan", "apisix", "orphan", weight=20))
        kit.wait_phase("Serving", "web", timeout=60)
        kit.wait_phase("Serving", "api", timeout=60)
        for shard, app in (("a", "web"), ("b", "api")):
            wait_for(
                lambda shard=shard, app=app: (namespace, app) in served(ctls[shard]),
                20,
                what=f"{app} served by shard {shard}",
            )
        assert served(ctls["a"]) == {(namespace, "web")}, ctls["a"].tail()
        assert served(ctls["b"]) == {(namespace, "api")}, ctls["b"].tail()
        orphan = kit.get("orphan")
        assert orphan is not None
        assert not orphan.get("status"), orphan.get("status")
        assert not orphan["metadata"].get("finalizers"), orphan["metadata"]
    finally:
        for ctl in ctls.values():
            ctl.stop()
