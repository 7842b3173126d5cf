"""Following API objects by list and watch, the way a client-go informer does.

The data plane reacts to Pods, Services and routes. Listing them all on a timer made
it one of the API server's busiest clients (4 to 20 full LISTs a second); here each
kind is listed once, then followed through a watch from that list's resourceVersion.
A watch that the server ends (``timeoutSeconds``, at most ``RESYNC`` seconds) is
resumed from the last resourceVersion seen, without a new LIST; only an expired
resourceVersion (410 Gone) or a broken connection costs a relist.

A kind served by a CRD that is not installed is simply empty. Installing the CRD later
is noticed through a watch on CustomResourceDefinitions, so a route created right
after its CRD is served within a second, without polling for the CRD.

This module only reads: it must never write an object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("canarylab.dataplane.watch")

RESYNC = 30.0
"""Longest time (seconds) a watch runs before it is renewed, and the longest a missing
CRD's kind waits before it is looked up again without any CRD event."""
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ObjectKey = tuple[str, str]
"""(namespace, name); the namespace is empty for cluster-scoped objects."""


@dataclass(frozen=True)
class WatchedKind:
    """One collection the data plane follows."""

    name: str
    """Key of the kind in a snapshot, e.g. ``pods``."""
    path: str
    """The cluster-wide collection, e.g. ``/api/v1/pods``."""
    crd: str | None = None
    """``<plural>.<group>`` of the CRD that serves the kind; None for built-in kinds."""


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def object_key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class ObjectCache:
    """The current objects of one kind, kept by one list and then watch events."""

    def __init__(self, kind: WatchedKind, changed: Callable[[], None]) -> None:
        self.kind = kind
        self._changed = changed
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.synced = False
        """True once the first list has been answered (or the CRD found missing)."""
        self.crd_event = asyncio.Event()
        """Set when a CRD changed: a missing kind looks again."""
        self.lists = 0
        self.watches = 0

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    async def run(self, client: httpx.AsyncClient) -> None:
        """List, then watch, forever; errors are logged and retried with a back-off."""
        backoff = 0.5
        while True:
            try:
                version = await self._list(client)
                if version is None:  # CRD not installed
                    await self._wait_for_crd()
                    continue
                backoff = 0.5
                loop = asyncio.get_running_loop()
                while True:
                    began = loop.time()
                    version = await self._watch(client, version)
                    if loop.time() - began < 1.0:
                        # A watch the server ends at once (an overloaded or restarting
                        # API server) is not renewed in a tight loop.
                        await asyncio.sleep(1.0)
            except Gone:
                log.info("%s: watch expired; listing again", self.kind.name)
            except (httpx.HTTPError, ValueError) as err:
                log.warning("%s: %s; listing again in %.1f s", self.kind.name, err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _wait_for_crd(self) -> None:
        self.crd_event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.crd_event.wait(), RESYNC)
        # A CRD's kind answers 404 for a moment after the CRD is created.
        await asyncio.sleep(0.2)

    async def _list(self, client: httpx.AsyncClient) -> str | None:
        self.lists += 1
        response = await client.get(self.kind.path)
        if response.status_code == 404 and self.kind.crd:
            self._replace([])
            return None
        response.raise_for_status()
        body = response.json()
        self._replace(body.get("items") or [])
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _replace(self, items: Iterable[dict[str, Any]]) -> None:
        objects = {object_key(o): o for o in items}
        was_synced, self.synced = self.synced, True
        if objects != self.objects or not was_synced:
            self.objects = objects
            self._changed()

    async def _watch(self, client: httpx.AsyncClient, version: str) -> str:
        """One watch request from ``version``; returns the last resourceVersion seen."""
        self.watches += 1
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(RESYNC)),
        }
        timeout = httpx.Timeout(10.0, read=RESYNC + 15)
        async with client.stream("GET", self.kind.path, params=params, timeout=timeout) as stream:
            if stream.status_code == 410:
                raise Gone()
            if stream.status_code == 404 and self.kind.crd:
                raise httpx.HTTPError(f"{self.kind.path} is no longer served")
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                if not line.strip():
                    continue
                version = self._apply(json.loads(line), version)
        return version

    def _apply(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ValueError(f"watch error: {obj.get('message', obj)}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        key = object_key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self._changed()
        return new_version


class ClusterView:
    """The caches of every watched kind, plus the CRD watch that revives missing kinds."""

    def __init__(self, kinds: Iterable[WatchedKind], changed: Callable[[], None]) -> None:
        self.caches = {k.name: ObjectCache(k, changed) for k in kinds}
        if any(c.kind.crd for c in self.caches.values()):
            self._crds: ObjectCache | None = ObjectCache(
                WatchedKind("customresourcedefinitions", CRDS), self._crds_changed
            )
        else:
            self._crds = None

    def _crds_changed(self) -> None:
        for cache in self.caches.values():
            if cache.kind.crd:
                cache.crd_event.set()

    @property
    def synced(self) -> bool:
        return all(c.synced for c in self.caches.values())

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every kind's objects now, by kind name."""
        return {name: cache.items() for name, cache in self.caches.items()}

    def requests(self) -> dict[str, int]:
        """How many lists and watches were sent (for the data plane's own log)."""
        caches = [*self.caches.values(), *([self._crds] if self._crds else [])]
        return {
            "lists": sum(c.lists for c in caches),
            "watches": sum(c.watches for c in caches),
        }

    async def run(self, client: httpx.AsyncClient) -> None:
        caches = [*self.caches.values(), *([self._crds] if self._crds else [])]
        async with asyncio.TaskGroup() as group:
            for cache in caches:
                group.create_task(cache.run(client))
