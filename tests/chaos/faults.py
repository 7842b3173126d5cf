"""The moving parts of the fault-injection suite: the app under test, a background
sampler of route weights and ready pods, a probe that runs for as long as asked, and
a killer that SIGKILLs the controller at a chosen moment and restarts it.

The sampler, probe and killer are threads so that the rollout driver stays a plain
sequence of steps. None of them asserts anything; they collect what they saw and the
tests judge it with ``tests.chaos.invariants``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from tests.chaos import invariants
from tests.integration.controller_kit import APISIX, Kit
from tests.integration.test_dataplane_helpers import demo_deployment, service

PARENT = "web"
CANARY = "web-canary"
RULE = "main"
READY_DELAY = "100ms"
"""kwok's pod-ready delay for every pod of the suite (the annotation below)."""
READY_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/delay"
STAGES = ("create", "shift", "replace", "delete", "between")


def fast_ready(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` (a Deployment) with pods that kwok marks Ready after ``READY_DELAY``."""
    meta = manifest["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {})[READY_ANNOTATION] = READY_DELAY
    return manifest


def route_body() -> dict[str, Any]:
    """An ApisixRoute whose ``main`` rule sends everything to the parent's Service."""
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": PARENT, "labels": {"team": "web"}},
        "spec": {
            "http": [
                {
                    "name": RULE,
                    "match": {"paths": ["/*"]},
                    "backends": [{"serviceName": PARENT, "servicePort": 80}],
                }
            ]
        },
    }


def canary_body(version: str, weight: int) -> dict[str, Any]:
    """A CanaryDeployment of ``web`` running ``canarylab/demo:<version>``."""
    labels = {"app": "web", "track": "stable"}  # the parent's selector: replace needs them
    return {
        "apiVersion": "canarylab.io/v1alpha1",
        "kind": "CanaryDeployment",
        "metadata": {"name": PARENT},
        "spec": {
            "parentDeployment": PARENT,
            "version": version,
            "replicas": 1,
            "weight": weight,
            "template": {
                "metadata": {"labels": labels, "annotations": {READY_ANNOTATION: READY_DELAY}},
                "spec": {"containers": [{"name": "app", "image": f"canarylab/demo:{version}"}]},
            },
            "trafficRouter": {"apisix": {"route": PARENT}},
        },
    }


def create_app(kit: Kit, version: str = "v0") -> None:
    """The parent Deployment (demo app), its Service and the route, as a user has them."""
    kit.apps.create_namespaced_deployment(
        kit.ns, fast_ready(demo_deployment(PARENT, version, replicas=1))
    )
    kit.core.create_namespaced_service(kit.ns, service(PARENT, "stable"))
    group, version_, plural = APISIX
    kit.custom.create_namespaced_custom_object(group, version_, kit.ns, plural, route_body())


def gateway_answers(gateway: str, namespace: str) -> bool:
    """The gateway serves the app's route (a 2xx) right now."""
    request = urllib.request.Request(
        gateway + "/", headers={"Host": sandbox_host(PARENT, namespace)}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def parent_image(kit: Kit) -> str:
    d = kit.apps.read_namespaced_deployment(PARENT, kit.ns)
    return str(d.spec.template.spec.containers[0].image)


def converged(kit: Kit, weight: int) -> Callable[[], bool]:
    """Status observed the latest spec, says Serving, and the route carries ``weight``."""

    def check() -> bool:
        cd = kit.get(PARENT) or {}
        status = cd.get("status") or {}
        route = kit.get_route("apisix", PARENT) or {}
        return (
            status.get("observedGeneration") == cd["metadata"]["generation"]
            and status.get("phase") == "Serving"
            and (status.get("weights") or {}).get("canary") == weight
            and not invariants.split_problems(route, RULE, PARENT, CANARY, weight)
        )

    return check


def current_state(kit: Kit) -> dict[str, Any]:
    group, version, plural = APISIX
    return {
        "deployments": [
            kit.api_client.sanitize_for_serialization(d) for d in kit.deployments().values()
        ],
        "services": [kit.api_client.sanitize_for_serialization(s) for s in kit.services().values()],
        "routes": kit.custom.list_namespaced_custom_object(group, version, kit.ns, plural)["items"],
    }


def settled_problems(kit: Kit, before: dict[str, Any], version: str) -> list[str]:
    """After the CanaryDeployment is gone: the route is as the user wrote it, nothing of
    the canary is left, and the parent runs ``canarylab/demo:<version>``."""
    problems = []
    after = invariants.route_shape(kit.get_route("apisix", PARENT) or {})
    if after != before:
        problems.append(f"route not restored: {after} != {before}")
    state = current_state(kit)
    keep = {"Deployment": {PARENT}, "Service": {PARENT}, "Route": {PARENT}}
    problems += invariants.leftovers(state["deployments"], state["services"], state["routes"], keep)
    image = parent_image(kit)
    if image != f"canarylab/demo:{version}":
        problems.append(f"the parent runs {image}, want canarylab/demo:{version}")
    return problems


# ------------------------------------------------------------------ sampler
class Sampler(threading.Thread):
    """Samples the route and the Deployments' readyReplicas until stopped.

    A sample counts only when the route's resourceVersion was the same before and after
    the Deployments were listed: the route then held over the whole read, so a weight
    on a backend with 0 ready pods in it was really there at that moment.
    """

    def __init__(self, kubeconfig: str, namespace: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"sampler-{namespace}")
        self.kubeconfig, self.namespace, self.interval = kubeconfig, namespace, interval
        self.samples = 0
        self.errors = 0
        """Reads that failed (expected while the API server restarts)."""
        self.violations: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        api = config.new_client_from_config(config_file=self.kubeconfig)
        custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        group, version, plural = APISIX
        backends = {PARENT: PARENT, CANARY: CANARY}
        try:
            while not self._halt.is_set():
                try:
                    before = custom.get_namespaced_custom_object(
                        group, version, self.namespace, plural, PARENT, _request_timeout=5
                    )
                    deps = apps.list_namespaced_deployment(self.namespace, _request_timeout=5)
                    after = custom.get_namespaced_custom_object(
                        group, version, self.namespace, plural, PARENT, _request_timeout=5
                    )
                except (ApiException, OSError, Exception):  # the API server may be down
                    self.errors += 1
                    self._halt.wait(0.2)
                    continue
                if before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
                    self.samples += 1
                    ready = {d.metadata.name: d.status.ready_replicas or 0 for d in deps.items}
                    canaries = [
                        d.metadata.name
                        for d in deps.items
                        if invariants.CANARY_LABEL in (d.metadata.labels or {})
                    ]
                    found = invariants.weight_on_unready(after, ready, backends)
                    if len(canaries) > 1:
                        found.append(f"{len(canaries)} canary Deployments at once: {canaries}")
                    stamp = time.strftime("%H:%M:%S")
                    self.violations += [f"{stamp} {v}" for v in found]
                self._halt.wait(self.interval)
        finally:
            api.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# -------------------------------------------------------------------- probe
class ProbeLoop(threading.Thread):
    """Runs the real probe against the gateway in back-to-back slices until stopped."""

    def __init__(self, gateway: str, namespace: str, rate: float = 80, slice_s: float = 2.0):
        super().__init__(daemon=True, name=f"probe-{namespace}")
        self.settings = ProbeSettings(
            url=gateway + "/",
            headers=(("Host", sandbox_host(PARENT, namespace)),),
            duration=slice_s,
            rate=rate,
            connections=16,
            timeout=5.0,
        )
        self.frames: list[pd.DataFrame] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            result = asyncio.run(Probe(self.settings).run())
            self.frames.append(result.requests)

    def stop(self) -> pd.DataFrame:
        """Stop after the current slice; every request so far, in one frame."""
        self._halt.set()
        self.join(self.settings.duration + self.settings.timeout + 10)
        frames = [f for f in self.frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ------------------------------------------------------------------- killer
@dataclass(frozen=True)
class KillPlan:
    """When to kill in one rollout: ``offset`` seconds into ``stage``, down ``delay`` s."""

    stage: str
    offset: float
    delay: float

    @classmethod
    def draw(cls, rng: random.Random) -> KillPlan:
        return cls(rng.choice(STAGES), rng.uniform(0.0, 1.5), rng.uniform(0.0, 3.0))


class Killer(threading.Thread):
    """SIGKILLs the controller once per rollout at its planned moment, then restarts it.

    The rollout driver announces each stage with ``stage_started``; the killer waits
    for its plan's stage, sleeps the offset, kills (noting which stage was really
    running by then), waits the delay and starts the controller again. ``kill``
    returns whether a live controller was killed.
    """

    def __init__(self, kill: Callable[[], bool], start: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="killer")
        self._kill, self._start = kill, start
        self._cond = threading.Condition()
        self._plans: list[tuple[int, KillPlan]] = []
        self._stage = ""
        self._busy = False
        self._stopping = False
        self.kills: list[tuple[int, str, KillPlan]] = []
        """(rollout, stage running at the kill, plan) for every kill made."""
        self.missed: list[int] = []
        """Rollouts whose kill found no live controller."""
        self.error: BaseException | None = None

    def plan(self, rollout: int, plan: KillPlan) -> None:
        with self._cond:
            self._plans.append((rollout, plan))
            self._stage = ""
            self._cond.notify_all()

    def stage_started(self, stage: str) -> None:
        with self._cond:
            self._stage = stage
            self._cond.notify_all()

    def wait_killed(self, rollout: int, timeout: float = 90) -> None:
        """Until this rollout's kill has happened (the restart may still be under way)."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    any(k[0] == rollout for k in self.kills)
                    or rollout in self.missed
                    or self.error is not None
                ),
                timeout,
            )

    def wait_idle(self, timeout: float = 90) -> None:
        """Until the last kill's restart is done."""
        with self._cond:
            self._cond.wait_for(
                lambda: (not self._plans and not self._busy) or self.error is not None, timeout
            )

    def _reached(self, stage: str) -> bool:
        return bool(self._stage) and STAGES.index(self._stage) >= STAGES.index(stage)

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: bool(self._plans) or self._stopping)
                    if not self._plans:
                        return
                    rollout, plan = self._plans[0]
                    self._busy = True
                    self._cond.wait_for(lambda p=plan: self._reached(p.stage))
                time.sleep(plan.offset)
                with self._cond:
                    stage = self._stage
                killed = self._kill()
                with self._cond:
                    if killed:
                        self.kills.append((rollout, stage, plan))
                    else:
                        self.missed.append(rollout)
                    self._cond.notify_all()
                time.sleep(plan.delay)
                self._start()
                with self._cond:
                    self._plans.pop(0)
                    self._busy = False
                    self._cond.notify_all()
        except BaseException as err:  # surfaced by the test
            with self._cond:
                self.error = err
                self._busy = False
                self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.join(30)


def window(windows: list[invariants.Window], stage: str, start: float) -> None:
    windows.append(invariants.Window(stage, start, time.time()))
