"""The kubelet's two writes for demo-app Pods: the Ready condition and the final delete.

kwok starts a demo-app Pod (phase Running) but leaves it not Ready (its stages in
``canarylab/sandbox/data/kwok-stages.yaml`` skip demo-app images); the data plane
knows when the Pod's process answers ``/readyz`` and says so in the Pod's status, as a
kubelet's readiness probe would. Deployment status, ``kubectl rollout status`` and the
controller then see when a Pod really serves.

Deleting a Pod only marks it (deletionTimestamp); a kubelet stops its containers
within the grace period and then removes the Pod. kwok does not remove demo-app Pods:
the data plane does, once the Pod's process has drained and exited.

This module writes only the status subresource and the deletion of demo-app Pods; it
never decides readiness itself (that is the runner's ``/readyz`` check).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import httpx

from canarylab.dataplane.workloads import DemoPod

log = logging.getLogger("canarylab.dataplane.pods")

STRATEGIC_MERGE = {"Content-Type": "application/strategic-merge-patch+json"}


def readiness_patch(pod: DemoPod, ready: bool, now: datetime.datetime) -> dict[str, Any]:
    """The status patch that sets the Pod's Ready and ContainersReady conditions (merged
    by type), and its containers' ``ready``, to ``ready``."""
    value = "True" if ready else "False"
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    reason = {} if ready else {"reason": "ContainersNotReady"}
    return {
        "status": {
            "conditions": [
                {"type": kind, "status": value, "lastTransitionTime": stamp, **reason}
                for kind in ("Ready", "ContainersReady")
            ],
            "containerStatuses": _container_statuses(pod, ready),
        }
    }


def _container_statuses(pod: DemoPod, ready: bool) -> list[dict[str, Any]]:
    """Every container's status with ``ready`` set: the list is replaced whole by a patch
    (it has no merge key), so kwok's fields (image, state, ...) are carried over."""
    known = {str(s.get("name")): dict(s) for s in pod.container_statuses}
    return [{**known.get(name, {"name": name}), "ready": ready} for name in pod.containers]


def _path(pod: DemoPod) -> str:
    return f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"


class PodReporter:
    """Writes what the runner knows about demo-app Pods back to the API server."""

    def __init__(self, clock: Callable[[], datetime.datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._sent: dict[str, tuple[str, bool]] = {}
        """Pod uid → (resourceVersion it had, Ready value) of the last status write, so
        that a write is not repeated before the watch shows its result."""
        self._deleted: dict[str, str] = {}
        """Pod uid → resourceVersion it had when its deletion was completed."""

    async def sync(
        self,
        client: httpx.AsyncClient,
        pods: Sequence[DemoPod],
        ready: Collection[str],
        has_process: Callable[[str], bool],
    ) -> None:
        """Ready = the Pod's process is ready (uids in ``ready``); Pods being deleted
        whose process has exited are removed."""
        for pod in pods:
            if pod.terminating:
                if not has_process(pod.uid) and self._deleted.get(pod.uid) != pod.resource_version:
                    await self._finish_deletion(client, pod)
                continue
            want = pod.uid in ready
            if not pod.running or pod.ready == want:
                continue
            if self._sent.get(pod.uid) == (pod.resource_version, want):
                continue
            body = readiness_patch(pod, want, self._clock())
            response = await client.patch(
                f"{_path(pod)}/status", json=body, headers=STRATEGIC_MERGE
            )
            if response.status_code == 422:
                # Container statuses refused: the conditions alone are what Deployment
                # availability and Services read.
                log.warning("pod %s/%s: %s; writing conditions only", *pod.key, response.text)
                del body["status"]["containerStatuses"]
                response = await client.patch(
                    f"{_path(pod)}/status", json=body, headers=STRATEGIC_MERGE
                )
            if response.status_code == 200:
                self._sent[pod.uid] = (pod.resource_version, want)
            elif response.status_code != 404:
                log.warning("pod %s/%s: Ready=%s not written: %s", *pod.key, want, response.text)
        known = {p.uid for p in pods}
        for uid in [u for u in self._sent if u not in known]:
            del self._sent[uid]
        for uid in [u for u in self._deleted if u not in known]:
            del self._deleted[uid]

    async def _finish_deletion(self, client: httpx.AsyncClient, pod: DemoPod) -> None:
        response = await client.request(
            "DELETE",
            _path(pod),
            json={"gracePeriodSeconds": 0, "preconditions": {"uid": pod.uid}},
        )
        # 404: already gone; 409: the name now belongs to another Pod.
        if response.status_code in (200, 202, 404, 409):
            self._deleted[pod.uid] = pod.resource_version
        else:
            log.warning("pod %s/%s: deletion not completed: %s", *pod.key, response.text)
