"""The canaries one controller serves: a work queue, a few reconcile workers, their memory.

Watch events only *poke* a canary (``Fleet.poke``); a bounded set of workers takes
canaries off a queue one at a time and runs a pass for each. A canary is queued at
most once however many events arrive (pokes coalesce), and a canary poked while its
pass runs goes round once more afterwards, so no event is lost and no canary is ever
reconciled twice at once. Timers re-poke a canary for the periodic resync, when a
lease runs out, or after a failed pass (with backoff).

Everything a running controller remembers lives in its ``Fleet`` (kopf hands it to
every handler as ``memo.fleet``), never in a module, so two controllers in one process
or a test never share state. This module must never make decisions (``canarylab.model``
does) and never talk to the API server itself (``cluster`` and the routers do).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

from canarylab.model.workload import canary_deployment_name_for, canary_service_name, selects
from canarylab.operator.cluster import Cluster
from canarylab.operator.reconcile import Outcome, Snapshot, finalize, reconcile
from canarylab.routers.apisix import APISIX_ROUTE
from canarylab.routers.base import Owner, managed_route_name
from canarylab.routers.gatewayapi import HTTP_ROUTE

Key = tuple[str, str]
log = logging.getLogger("canarylab.controller")

RESYNC = 30.0
"""Seconds between passes when nothing is poked (drift repair, e.g. a hand-edited route)."""
LAPSE_SLACK = 0.2
"""Seconds to wake after a lease's deadline (the lapse test is strict: past the deadline)."""
WORKERS = 32
"""Passes that may run at once. A pass mostly waits on the API server, in a thread (the
client is synchronous), so this bounds requests in flight rather than CPU."""
SETTLE = 0.2
"""Seconds a canary waits after a Deployment or route event before its pass: a rollout
sends a burst of status updates (created, scheduled, ready), and one pass after the
burst sees them all. Changes to the CanaryDeployment itself are not delayed."""
FINALIZER = "canarylab.io/finalizer"
"""Held on every CanaryDeployment until its route is restored (the name kopf used)."""
MANAGED_ROUTES = {
    "apisix": (APISIX_ROUTE.plural, "apisix_managed_routes"),
    "gatewayAPI": (HTTP_ROUTE.plural, "http_managed_routes"),
}
"""Router kind → (route plural, the kopf index of the match routes canaries manage)."""


class WorkQueue:
    """Canaries waiting for a pass: each at most once, in poke order."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()

    def __len__(self) -> int:
        return len(self._queued)

    def poke(self, key: Key) -> None:
        """Ask for a pass over ``key`` (a no-op if one is already waiting)."""
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    async def take(self) -> Key:
        """The next canary to reconcile; it counts as running until ``done``."""
        key = await self._ready.get()
        self._queued.discard(key)
        self._running.add(key)
        return key

    def done(self, key: Key) -> None:
        """The pass over ``key`` ended; if it was poked meanwhile, queue it again."""
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.poke(key)


@dataclasses.dataclass
class Fleet:
    """What one running controller remembers about the canaries it serves.

    Created by ``canarylab.operator.run`` with the cluster client; nothing here outlives
    the controller, and the cluster stays the record (a restart starts from it).
    """

    cluster: Cluster
    workers: int = WORKERS
    selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Serve only the CanaryDeployments whose labels include all of these (a shard);
    every one when empty. Shards must not overlap (``docs/operations.md``, Sharding)."""
    bodies: dict[Key, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """The newest CanaryDeployment body the watch delivered, per canary."""
    handled: dict[Key, int] = dataclasses.field(default_factory=dict)
    """The generation each canary's last pass saw: status-only events need no new pass."""
    written: dict[Key, tuple[Mapping[str, Any], Mapping[str, Any]]] = dataclasses.field(
        default_factory=dict
    )
    """``(replaced, new)`` status of each canary's last write, until the watch shows it:
    a pass that starts before then judges ``new``, not the stale body (else the same
    status and its Events, DriverLost or a phase change, would be posted twice)."""
    failures: dict[Key, int] = dataclasses.field(default_factory=dict)
    routes: dict[Key, tuple[str, str, str]] = dataclasses.field(default_factory=dict)
    """``(router kind, route, resourceVersion)`` each canary's last pass left its route at."""
    indexes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """kopf's ``canaries``, ``deployments`` and ``services`` indexes (live views)."""
    queue: WorkQueue | None = None
    _timers: dict[Key, asyncio.TimerHandle] = dataclasses.field(default_factory=dict)
    _settling: dict[Key, asyncio.TimerHandle] = dataclasses.field(default_factory=dict)
    _last_event: dict[Key, float] = dataclasses.field(default_factory=dict)
    """Loop time of the newest event each settling canary was poked for."""
    _snapped: dict[Key, float] = dataclasses.field(default_factory=dict)
    """Loop time each canary's last pass read the watch caches: events before it are in."""
    _tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    # -- lifecycle (kopf's startup and cleanup) ------------------------------------
    def start(self) -> None:
        """Start the workers on the running loop."""
        self.queue = WorkQueue()
        self._tasks = [
            asyncio.get_running_loop().create_task(self._work(), name=f"canarylab-worker-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for timers in (self._timers, self._settling):
            for timer in timers.values():
                timer.cancel()
            timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- what watch events do ------------------------------------------------------
    def seen(self, body: Mapping[str, Any], indexes: Mapping[str, Any]) -> None:
        """A CanaryDeployment event: keep its body, pass again if its spec is new."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if not self.serves(meta):
            if key in self.bodies:  # relabelled into another shard: that one serves it now
                log.info("canary %s/%s: no longer in this controller's shard", *key)
                self.gone(*key)
            return
        self.bodies[key] = body
        if not self.indexes:
            self.indexes = indexes
        if meta.get("deletionTimestamp") or self.handled.get(key) != meta.get("generation"):
            self.poke(*key)

    def serves(self, meta: Mapping[str, Any]) -> bool:
        """Whether a CanaryDeployment with this metadata is in this controller's shard."""
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.selector.items())

    def gone(self, namespace: str, name: str) -> None:
        """The CanaryDeployment is deleted for good: forget it."""
        key = (namespace, name)
        for memory in (
            self.bodies,
            self.handled,
            self.written,
            self.failures,
            self.routes,
            self._last_event,
            self._snapped,
        ):
            memory.pop(key, None)
        for timers in (self._timers, self._settling):
            timer = timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def poke_soon(self, namespace: str, name: str) -> None:
        """Poke after ``SETTLE`` seconds; pokes meanwhile join that one."""
        key = (namespace, name)
        if key not in self.bodies:
            return
        loop = asyncio.get_running_loop()
        self._last_event[key] = loop.time()
        if key in self._settling:
            return

        def settled() -> None:
            self._settling.pop(key, None)
            # a pass that read the caches after the newest event has seen it already
            # (kopf updates its indexes before it calls the event handlers): e.g. the
            # start-up listing of every Deployment and route, after the canary's own pass
            if self._snapped.get(key, -1.0) <= self._last_event.pop(key, 0.0):
                self.poke(*key)

        self._settling[key] = loop.call_later(SETTLE, settled)

    def route_changed(
        self, namespace: str, name: str, kind: str, route: str, version: str | None
    ) -> None:
        """A route event: poke the canary, unless it shows the route as the canary's own
        last pass left it (the watch echoing that pass's write needs no pass)."""
        if version is not None and self.routes.get((namespace, name)) == (kind, route, version):
            return
        self.poke_soon(namespace, name)

    def poke(self, namespace: str, name: str) -> None:
        """Ask for a pass over a canary now (coalesced with any pass already waiting)."""
        if self.queue is not None and (namespace, name) in self.bodies:
            self.queue.poke((namespace, name))

    def _poke_in(self, key: Key, seconds: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(
            max(0.0, seconds), self.poke, *key
        )

    # -- the workers ---------------------------------------------------------------
    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            key = await self.queue.take()
            try:
                await self._pass(key)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # one canary's failure never stops a worker
                failures = self.failures[key] = self.failures.get(key, 0) + 1
                self.handled.pop(key, None)
                delay = min(30.0, 0.5 * 2**failures)
                log.warning("canary %s/%s: pass failed (%s); retrying in %.1fs", *key, err, delay)
                self._poke_in(key, delay)
            finally:
                self.queue.done(key)

    async def _pass(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None:
            return
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if meta.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                await self._finalize(key, body)
            return
        if key not in self._snapped:
            self._known_absent(key, body)
        self._snapped[key] = asyncio.get_running_loop().time()
        snap = self._snapshot(key, body)
        # before anything exists to clean up (a deletion then waits for our restore),
        # and the parent's ownership in the same write
        claim = self.cluster.claim_patch(snap.cd["metadata"], FINALIZER, snap.parent)
        if claim is not None:
            if not await asyncio.to_thread(self.cluster.claim, snap.cd, claim):
                # the body changed under us: its watch event pokes us again (it may have
                # arrived during the write, hence the backstop)
                self.handled.pop(key, None)
                self._poke_in(key, 1.0)
                return
            cd = {**snap.cd, "metadata": {**snap.cd["metadata"], **claim}}
            snap = dataclasses.replace(snap, cd=cd)
        self.handled[key] = int(snap.cd["metadata"].get("generation") or 0)
        outcome = await asyncio.to_thread(reconcile, self.cluster, snap)
        self.failures.pop(key, None)
        if outcome.written is not None:
            self.written[key] = outcome.written
        if outcome.route is not None:
            self.routes[key] = outcome.route
        else:
            self.routes.pop(key, None)
        self._after(key, outcome)

    def _after(self, key: Key, outcome: Outcome) -> None:
        if outcome.gone:
            return
        if outcome.again:
            self.poke(*key)
            return
        delay = RESYNC * random.uniform(0.8, 1.2)
        if outcome.recheck_in is not None:
            delay = min(delay, max(0.0, outcome.recheck_in) + LAPSE_SLACK)
        self._poke_in(key, delay)

    def _known_absent(self, key: Key, body: Mapping[str, Any]) -> None:
        """Before a canary's first pass in this controller: if kopf's index (complete
        before any handler ran) holds no match route of it, record that route as absent,
        so clearing the match costs no DELETE answered 404 (one per canary, at every
        start). Deletion never trusts this (``_finalize``)."""
        namespace, name = key
        routers = (body.get("spec") or {}).get("trafficRouter") or {}
        route = managed_route_name(Owner(name, "", namespace))
        for kind, (plural, index) in MANAGED_ROUTES.items():
            managed = self.indexes.get(index)
            if kind in routers and managed is not None and (namespace, route) not in managed:
                self.cluster.absent_routes.add((plural, namespace, route))

    async def _finalize(self, key: Key, body: Mapping[str, Any]) -> None:
        namespace, name = key
        route = managed_route_name(Owner(name, "", namespace))
        for plural, _ in MANAGED_ROUTES.values():  # deletion always asks the API server
            self.cluster.absent_routes.discard((plural, namespace, route))
        plain = copy.deepcopy(
            {
                "metadata": dict(body["metadata"]),
                "spec": dict(body.get("spec") or {}),
                "status": dict(body.get("status") or {}),
            }
        )
        try:
            await asyncio.to_thread(finalize, self.cluster, *key, plain)
        except Exception as err:
            raise RuntimeError(f"restoring the route failed: {err}") from err
        await asyncio.to_thread(self.cluster.remove_finalizer, *key, FINALIZER)

    def _snapshot(self, key: Key, body: Mapping[str, Any]) -> Snapshot:
        """A consistent-enough copy of what one pass reads, from the body and the indexes."""
        cd = copy.deepcopy(dict(body))
        namespace, name = key
        parent = str((cd.get("spec") or {}).get("parentDeployment", ""))
        index = self.indexes["deployments"]
        written = self.written.get(key)
        if written is not None:
            if (cd.get("status") or {}) == written[0]:
                cd = {**cd, "status": copy.deepcopy(dict(written[1]))}
            else:
                self.written.pop(key, None)
        parent_obj = copy.deepcopy(_one(index, (namespace, parent)))
        return Snapshot(
            cd=cd,
            parent=parent_obj,
            canary=copy.deepcopy(_one(index, (namespace, canary_deployment_name_for(parent)))),
            services=_services_around(self.indexes["services"].get(namespace, ()), parent_obj),
            conflict=_conflict(self.indexes["canaries"], namespace, name, parent),
        )


def _services_around(
    services: Iterable[Mapping[str, Any]], parent: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Copies of the Services a pass may use: those selecting the parent's pods, and their
    canary Services (a namespace may hold many more; copying them all costs every pass)."""
    if parent is None:
        return []
    labels = (((parent.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    every = list(services)
    chosen = {
        s["metadata"]["name"]
        for s in every
        if selects((s.get("spec") or {}).get("selector") or {}, labels)
    }
    wanted = chosen | {canary_service_name(n) for n in chosen}
    return [copy.deepcopy(dict(s)) for s in every if s["metadata"]["name"] in wanted]


def _one(index: Mapping[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


def _conflict(index: Mapping[Any, Any], namespace: str, name: str, parent: str) -> str:
    """The name of an older canary on the same parent (the later one is refused)."""
    entries = sorted(index.get(("parent", namespace, parent), ()))
    if entries and entries[0][1] != name:
        return str(entries[0][1])
    return ""
