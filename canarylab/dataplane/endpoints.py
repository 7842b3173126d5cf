"""Publishing the demo-app processes as EndpointSlices, for real gateways.

Real Gateway API implementations (Traefik) find a Service's backends through its
EndpointSlices, not through the data plane's HAProxy plan. The data plane therefore
publishes one slice per ready process (``workloads.endpoint_slices``); kwok's fake pod
IPs never appear, because the sandbox runs kube-controller-manager without its
EndpointSlice controllers.

This module writes only EndpointSlices labelled ``managed-by: dataplane.canarylab.io``
and never touches any other object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from canarylab.dataplane.haproxy import Endpoint, ServiceKey
from canarylab.dataplane.workloads import SLICE_MANAGER, endpoint_slices

log = logging.getLogger("canarylab.dataplane.endpoints")

SLICES = "/apis/discovery.k8s.io/v1"
SliceKey = tuple[str, str]
"""(namespace, slice name)."""


class EndpointPublisher:
    """Keeps the API server's data-plane EndpointSlices equal to the ready processes."""

    def __init__(self) -> None:
        self.published: set[SliceKey] | None = None
        """Slices known to exist (None until the first listing)."""

    async def sync(
        self, client: httpx.AsyncClient, endpoints: Mapping[ServiceKey, Sequence[Endpoint]]
    ) -> None:
        if self.published is None:
            self.published = await self._existing(client)
        desired = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s
            for s in endpoint_slices(endpoints)
        }
        for key in sorted(self.published - desired.keys()):
            namespace, name = key
            response = await client.delete(f"{SLICES}/namespaces/{namespace}/endpointslices/{name}")
            if response.status_code in (200, 202, 404):
                self.published.discard(key)
        for key, body in sorted(desired.items()):
            if key in self.published:
                continue
            namespace, _ = key
            response = await client.post(
                f"{SLICES}/namespaces/{namespace}/endpointslices", json=body
            )
            if response.status_code in (201, 409):
                self.published.add(key)
            else:  # a namespace being deleted, say: try again next time
                log.debug("EndpointSlice %s/%s: %s", *key, response.text[:200])

    async def _existing(self, client: httpx.AsyncClient) -> set[SliceKey]:
        response = await client.get(
            f"{SLICES}/endpointslices",
            params={"labelSelector": f"endpointslice.kubernetes.io/managed-by={SLICE_MANAGER}"},
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json().get("items") or []
        return {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
