"""``Rollout``: the primitives an SRE drives a canary with, over one CanaryDeployment.

Each method states the outcome it wants (a canary of this version, this weight, held
at 0% as ``Aborted``, gone)
and is idempotent: calling it again after an interruption finds the resource's status
and carries on, never creating a duplicate. Every action goes to the recorder (who,
when, what, the result); while waiting, phase and weight changes and the resource's
Kubernetes Events are recorded too.

``Rollout.lease()`` is the driver's half of the dead-man's switch: while the block runs,
a daemon thread renews ``spec.lease`` so the controller knows someone is watching the
canary; if the process dies, the lease lapses and the controller pauses the canary at
weight 0 (see ``canarylab.model.lease`` and docs/reference.md). Renewal failures are
recorded, never raised: a driver must not die of its own dead-man's switch.

This module talks to the cluster only through the ``ApiClient`` that
``canarylab.kube`` builds (or one injected); it must never decide a gate or run traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from canarylab.model.lease import FIELD as LEASE_FIELD
from canarylab.model.lease import MIN_DURATION_S, RENEWALS_PER_DURATION, LeaseSpec
from canarylab.model.workload import CANARY_LABEL
from canarylab.record.events import Kind
from canarylab.rollout import manifest
from canarylab.rollout import status as st
from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.status import RolloutStatus


class RecorderLike(Protocol):
    """What a Rollout needs from ``canarylab.record.Recorder``."""

    def event(self, kind: str, **fields: Any) -> dict[str, Any]: ...

    def action(self, what: str, result: str, who: str | None = None, **details: Any) -> None: ...


class _NoRecorder:
    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {}

    def action(self, what: str, result: str, who: str | None = None, **details: Any) -> None:
        return None


LEASE_EVENT = Kind.LEASE
"""Record event kind of lease changes (acquired, renewal failed/recovered, released)."""


def default_holder() -> str:
    """``user@host:pid``: who holds a lease, as SREs see it in ``kubectl get -o yaml``."""
    from canarylab.record.writer import default_actor

    return f"{default_actor()}:{os.getpid()}"


class Lease:
    """A driver's lease on one CanaryDeployment, renewed by a daemon thread.

    Made by ``Rollout.lease()``; read its attributes, do not construct it directly.
    """

    def __init__(self, rollout: Rollout, duration_s: float, holder: str) -> None:
        self.holder = holder
        self.duration_s = duration_s
        """The lease's length in seconds (stored rounded up to whole seconds)."""
        self.last_renewed: dt.datetime | None = None
        """When the cluster last accepted a renewal (None: not yet, e.g. no canary yet)."""
        self.error: str | None = None
        """The error of the last renewal attempt; None once a renewal succeeds again."""
        self.renewals = 0
        self._rollout = rollout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Lease({self.holder}, {self.duration_s:g}s, last renewed {self.last_renewed})"

    @property
    def interval_s(self) -> float:
        """Seconds between renewals (a third of the duration)."""
        return self.duration_s / RENEWALS_PER_DURATION

    @property
    def lapsed(self) -> bool:
        """No renewal has been accepted for a whole duration: the canary may be paused."""
        last = self.last_renewed
        return last is not None and (dt.datetime.now(dt.UTC) - last).total_seconds() > (
            self.duration_s
        )

    def body(self, moment: dt.datetime) -> dict[str, Any]:
        """``spec.lease`` renewed at ``moment``."""
        return LeaseSpec(self.holder, math.ceil(self.duration_s), moment).body()

    def renew(self) -> bool:
        """Renew now; True when the cluster took it (a missing canary is not an error)."""
        from kubernetes.client.rest import ApiException

        r = self._rollout
        moment = dt.datetime.now(dt.UTC)
        with self._lock:  # a renewal and the release never interleave
            if self._stop.is_set() and self._thread is not None:
                return False
            try:
                r.custom.patch_namespaced_custom_object(
                    st.GROUP,
                    st.VERSION,
                    r.namespace,
                    st.PLURAL,
                    r.name,
                    {"spec": {LEASE_FIELD: self.body(moment)}},
                    _request_timeout=max(1.0, self.interval_s),
                )
            except ApiException as err:
                if err.status == 404:  # not created yet, or deleted: nothing to hold
                    return False
                self._failed(manifest.api_reason(err))
                return False
            except Exception as err:  # the network, a timeout: record, keep driving
                self._failed(f"{type(err).__name__}: {err}")
                return False
            self.accepted(moment)
            return True

    def accepted(self, moment: dt.datetime) -> None:
        """The cluster holds a lease renewed at ``moment`` (a renewal or a create)."""
        if self.error is not None:
            self._rollout.recorder.event(
                LEASE_EVENT,
                message=f"lease renewed again after: {self.error}",
                holder=self.holder,
                what="recovered",
            )
        self.error = None
        self.last_renewed = moment
        self.renewals += 1

    def _failed(self, reason: str) -> None:
        first = self.error is None
        self.error = reason
        if first:  # one record per outage, not one per attempt
            self._rollout.recorder.event(
                LEASE_EVENT,
                message=f"lease renewal failed: {reason}",
                holder=self.holder,
                what="renewal-failed",
                last_renewed=self.last_renewed.isoformat() if self.last_renewed else None,
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.renew()

    def start(self) -> None:
        self.renew()
        self._rollout.recorder.event(
            LEASE_EVENT,
            message=f"lease held by {self.holder} ({self.duration_s:g}s)",
            holder=self.holder,
            what="acquired",
            duration_s=self.duration_s,
        )
        self._thread = threading.Thread(
            target=self._loop, name=f"canarylab-lease-{self._rollout.name}", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and remove ``spec.lease`` (the canary then behaves as hand-made)."""
        from kubernetes.client.rest import ApiException

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 2)
        r = self._rollout
        with self._lock:
            try:
                r.custom.patch_namespaced_custom_object(
                    st.GROUP,
                    st.VERSION,
                    r.namespace,
                    st.PLURAL,
                    r.name,
                    {"spec": {LEASE_FIELD: None}},
                )
                result = "released"
            except ApiException as err:
                result = "released" if err.status == 404 else manifest.api_reason(err)
            except Exception as err:
                result = f"{type(err).__name__}: {err}"
        r.recorder.event(
            LEASE_EVENT,
            message=f"lease of {self.holder}: {result}",
            holder=self.holder,
            what="released" if result == "released" else "release-failed",
        )


class Rollout:
    """One parent Deployment's canary, as a ``CanaryDeployment`` named ``name`` (default: the parent's name).

    ``kube`` is an ``ApiClient``, a kubeconfig path, or None for the current kubeconfig
    or the running sandbox (``canarylab.kube.resolve``).
    """

    def __init__(
        self,
        namespace: str,
        parent: str,
        *,
        name: str | None = None,
        kube: Any = None,
        recorder: RecorderLike | None = None,
        poll_s: float = 0.2,
        controller_hint: str = "is the controller running? start it with `canarylab controller`",
    ) -> None:
        from kubernetes import client

        if kube is None or isinstance(kube, str | Path):
            from canarylab.kube import api_client

            kube = api_client(kube)
        self.namespace = namespace
        self.parent = parent
        self.name = name or parent
        self.api = kube
        self.custom = client.CustomObjectsApi(kube)
        self.apps = client.AppsV1Api(kube)
        self.core = client.CoreV1Api(kube)
        self.recorder: RecorderLike = recorder or _NoRecorder()
        self.poll_s = poll_s
        self.controller_hint = controller_hint
        self._lease: Lease | None = None
        self._last_seen: tuple[Any, ...] | None = None
        self._seen_events: dict[str, int] = {}
        self._events_synced_at = 0.0

    def __repr__(self) -> str:
        return f"Rollout({self.namespace}/{self.name}, parent={self.parent})"

    # -- reading ------------------------------------------------------------------

    def get(self) -> dict[str, Any] | None:
        """The CanaryDeployment as a dict, or None when it does not exist."""
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                st.GROUP, st.VERSION, self.namespace, st.PLURAL, self.name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise self._api_error("read", err) from None

    def status(self) -> RolloutStatus:
        """A typed snapshot: phase, desired and applied weight, ready replicas, conditions."""
        obj = self.get()
        snap = st.absent(self.name) if obj is None else st.parse(obj)
        self._observe(snap)
        return snap

    def parent_deployment(self) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        try:
            dep = self.apps.read_namespaced_deployment(self.parent, self.namespace)
        except ApiException as err:
            if err.status == 404:
                raise RolloutError(
                    f"parent Deployment {self.namespace}/{self.parent} does not exist; "
                    "check the namespace and parent name"
                ) from None
            raise self._api_error("read the parent of", err) from None
        return self.api.sanitize_for_serialization(dep)

    def parent_image(self) -> str:
        containers = self.parent_deployment()["spec"]["template"]["spec"]["containers"]
        return str(containers[0].get("image", ""))

    # -- the driver's lease ----------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, duration_s: float = 30.0, holder: str | None = None) -> Iterator[Lease]:
        """Hold a lease on this CanaryDeployment while the block runs (the dead-man's switch).

        Renews ``spec.lease`` every ``duration_s / 3`` from a daemon thread; a canary
        created meanwhile (``create_canary``) carries the lease from the start. If this
        process dies, the lease lapses ``duration_s`` after the last renewal and the
        controller sets the canary's weight to 0 (``Paused``/``DriverLost``). Leaving the
        block stops renewing and removes the lease. Renewal errors are recorded and kept
        in ``Lease.error``; they never raise.
        """
        if duration_s < MIN_DURATION_S:
            raise RolloutError(f"a lease lasts at least {MIN_DURATION_S}s, not {duration_s:g}s")
        if self._lease is not None:
            raise RolloutError(
                f"{self.namespace}/{self.name} already holds a lease ({self._lease.holder}); "
                "leave that block first"
            )
        held = Lease(self, duration_s, holder or default_holder())
        self._lease = held
        try:
            held.start()
            yield held
        finally:
            self._lease = None
            held.release()

    # -- actions ------------------------------------------------------------------

    def create_canary(
        self,
        *,
        version: str,
        image: str | None = None,
        template: Mapping[str, Any] | None = None,
        replicas: int = 1,
        weight: int = 0,
        env: Mapping[str, str] | None = None,
        router: str = "apisix",
        route: str | None = None,
        rules: list[Any] | None = None,
        port: int | str | None = None,
    ) -> RolloutStatus:
        """Create the CanaryDeployment; a no-op when one with this version already exists.

        Give ``image`` (the parent's pod template with its first container's image
        replaced, plus ``env``) or a whole pod ``template``. ``router`` is ``apisix``
        (an ``ApisixRoute``) or ``gatewayAPI`` (an ``HTTPRoute``); ``route`` defaults to
        the parent's name.
        """
        manifest.check_weight(weight)
        if (image is None) == (template is None):
            raise RolloutError("create_canary needs exactly one of image= or template=")
        if replicas < 0:
            raise RolloutError(f"replicas must be ≥ 0, got {replicas}")
        current = self.status()
        if current.exists:
            if current.version != version:
                raise RolloutError(
                    f"CanaryDeployment {self.namespace}/{self.name} already rolls out version "
                    f"{current.version!r} (phase {current.phase or 'unknown'}); delete it "
                    f"(`canarylab delete {self.name} -n {self.namespace}`) before "
                    f"creating version {version!r}"
                )
            self.recorder.action("create_canary", "unchanged", version=version, phase=current.phase)
            if self._lease is not None:  # a driver came back: take the lease over at once
                self._lease.renew()
                return self.status()
            return current
        if template is None:
            template = manifest.template_from_parent(
                self.parent_deployment()["spec"]["template"], str(image), env or {}
            )
        body: dict[str, Any] = {
            "apiVersion": f"{st.GROUP}/{st.VERSION}",
            "kind": st.KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "parentDeployment": self.parent,
                "version": version,
                "replicas": replicas,
                "weight": weight,
                "template": dict(template),
                "trafficRouter": manifest.router_config(router, route or self.parent, rules, port),
            },
        }
        held = self._lease
        created_at = dt.datetime.now(dt.UTC)
        if held is not None:  # never a canary without the lease while a driver holds one
            body["spec"][LEASE_FIELD] = held.body(created_at)
        from kubernetes.client.rest import ApiException

        try:
            self.custom.create_namespaced_custom_object(
                st.GROUP, st.VERSION, self.namespace, st.PLURAL, body
            )
        except ApiException as err:
            if err.status == 409:  # created meanwhile (a parallel re-run): same checks
                return self.create_canary(
                    version=version,
                    template=template,
                    replicas=replicas,
                    weight=weight,
                    router=router,
                    route=route,
                    rules=rules,
                    port=port,
                )
            self.recorder.action(
                "create_canary", f"error: {manifest.api_reason(err)}", version=version
            )
            raise self._api_error("create", err) from None
        if held is not None:
            held.accepted(created_at)
        self.recorder.action(
            "create_canary",
            "created",
            version=version,
            image=image,
            replicas=replicas,
            weight=weight,
        )
        return self.status()

    def set_weight(self, weight: int, *, wait: bool = True, timeout: float = 60) -> RolloutStatus:
        """Ask for ``weight`` percent of traffic on the canary; by default wait until applied."""
        manifest.check_weight(weight)
        current = self.status()
        if not current.exists:
            raise RolloutError(
                f"no CanaryDeployment {self.namespace}/{self.name}: create the canary first"
            )
        if current.desired_weight == weight:
            self.recorder.action("set_weight", "unchanged", weight=weight)
        else:
            self._patch({"spec": {"weight": weight}}, "set_weight", weight=weight)
            self.recorder.action(
                "set_weight", "requested", weight=weight, previous=current.desired_weight
            )
        if not wait:
            return self.status()
        return self._until(
            lambda s: s.weight_applied, timeout, f"the route to carry weight {weight}"
        )

    def wait_ready(self, timeout: float = 60) -> RolloutStatus:
        """Wait until every canary replica is ready."""
        return self._until(
            lambda s: s.ready and s.observed,
            timeout,
            "the canary pods to be ready",
            hint=(
                f"its pods are not Ready: `kubectl get pods -n {self.namespace} "
                f"-l {CANARY_LABEL}={self.name}` and `kubectl describe` them"
            ),
        )

    def wait(self, phase: str | Iterable[str], timeout: float = 60) -> RolloutStatus:
        """Wait until the resource's phase is ``phase`` (or one of several)."""
        phases = {phase} if isinstance(phase, str) else set(phase)
        return self._until(
            lambda s: s.phase in phases and s.observed,
            timeout,
            f"phase {' or '.join(sorted(phases))}",
        )

    def replace(self, *, wait: bool = True, timeout: float = 180) -> RolloutStatus:
        """Promote the canary into the parent; by default wait for phase ``Replaced``."""
        current = self.status()
        if not current.exists:
            raise RolloutError(
                f"no CanaryDeployment {self.namespace}/{self.name} to replace with: "
                "create the canary first"
            )
        if current.replace:
            self.recorder.action("replace", "unchanged", phase=current.phase)
        else:
            self._patch({"spec": {"replace": True}}, "replace")
            self.recorder.action("replace", "requested", version=current.version)
        if not wait:
            return self.status()
        return self.wait("Replaced", timeout)

    def delete(self, *, wait: bool = True, timeout: float = 60) -> RolloutStatus:
        """Delete the CanaryDeployment; the controller restores the route first."""
        from kubernetes.client.rest import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                st.GROUP, st.VERSION, self.namespace, st.PLURAL, self.name
            )
            self.recorder.action("delete", "requested")
        except ApiException as err:
            if err.status != 404:
                self.recorder.action("delete", f"error: {manifest.api_reason(err)}")
                raise self._api_error("delete", err) from None
            self.recorder.action("delete", "unchanged")
        if not wait:
            return self.status()
        done = self._until(lambda s: not s.exists, timeout, "the CanaryDeployment to be gone")
        self.recorder.action("delete", "deleted")
        return done

    def abort(self, *, keep: bool = False, timeout: float = 60) -> RolloutStatus:
        """Emergency rollback: weight 0 (waiting until the route carries it), then delete.

        ``keep=True`` is Argo's abort (``canarylab abort``): set ``spec.aborted`` and wait
        for phase ``Aborted`` (0% on the route, everything on the parent), keeping the
        CanaryDeployment, its Deployment and ``spec.weight``; ``resume()`` undoes it.
        """
        current = self.status()
        if not current.exists:
            self.recorder.action("abort", "unchanged", message="abort: nothing to abort")
            return current
        if current.replace:
            raise RolloutError(
                f"{self.namespace}/{self.name} is already being promoted into the parent "
                f"(phase {current.phase}); abort cannot roll back a replace — roll the parent "
                "Deployment back instead (`kubectl rollout undo`)"
            )
        if keep:
            if current.aborted:
                self.recorder.action("abort", "unchanged", phase=current.phase)
            else:
                self._patch({"spec": {"aborted": True}}, "abort", weight=current.desired_weight)
                self.recorder.action("abort", "requested", weight=current.desired_weight, keep=True)
            return self._until(
                lambda s: s.phase == "Aborted" and s.observed and not s.applied_weight,
                timeout,
                "phase Aborted (all traffic on the parent)",
            )
        self.recorder.action("abort", "requested", weight=current.desired_weight)
        if current.desired_weight != 0 or (current.applied_weight or 0) != 0:
            self.set_weight(0, timeout=timeout)
        gone = self.delete(timeout=timeout)
        self.recorder.action("abort", "rolled back")
        return gone

    def resume(
        self, weight: int | None = None, *, wait: bool = True, timeout: float = 60
    ) -> RolloutStatus:
        """Leave ``Aborted``: clear ``spec.aborted``, back to ``spec.weight`` (or ``weight``)."""
        if weight is not None:
            manifest.check_weight(weight)
        current = self.status()
        if not current.exists:
            raise RolloutError(f"no CanaryDeployment {self.namespace}/{self.name} to resume")
        want = current.desired_weight if weight is None else weight
        if not current.aborted and want == current.desired_weight:
            self.recorder.action("resume", "unchanged", weight=want)
        else:
            body: dict[str, Any] = {"aborted": False}
            if weight is not None:
                body["weight"] = weight
            self._patch({"spec": body}, "resume", weight=want)
            self.recorder.action("resume", "requested", weight=want)
        if not wait:
            return self.status()
        return self._until(
            lambda s: s.phase != "Aborted" and s.weight_applied,
            timeout,
            f"the route to carry weight {want}",
        )

    # -- async variants (for notebook cells that must not block the kernel) --------

    async def acreate_canary(self, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.create_canary(**kwargs))

    async def aset_weight(self, weight: int, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.set_weight(weight, **kwargs))

    async def await_ready(self, **kwargs: Any) -> RolloutStatus:
        """``wait_ready`` without blocking the event loop (``a`` + ``wait_ready``)."""
        return await asyncio.to_thread(lambda: self.wait_ready(**kwargs))

    async def await_phase(self, phase: str | Iterable[str], **kwargs: Any) -> RolloutStatus:
        """``wait(phase)`` without blocking the event loop."""
        return await asyncio.to_thread(lambda: self.wait(phase, **kwargs))

    async def areplace(self, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.replace(**kwargs))

    async def aabort(self, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.abort(**kwargs))

    async def aresume(self, weight: int | None = None, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.resume(weight, **kwargs))

    async def adelete(self, **kwargs: Any) -> RolloutStatus:
        return await asyncio.to_thread(lambda: self.delete(**kwargs))

    async def astatus(self) -> RolloutStatus:
        return await asyncio.to_thread(self.status)

    # -- internals ----------------------------------------------------------------

    def _patch(self, body: Mapping[str, Any], what: str, **details: Any) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.custom.patch_namespaced_custom_object(
                st.GROUP, st.VERSION, self.namespace, st.PLURAL, self.name, body
            )
        except ApiException as err:
            self.recorder.action(what, f"error: {manifest.api_reason(err)}", **details)
            raise self._api_error(what.replace("_", " "), err) from None

    def _until(
        self,
        done: Callable[[RolloutStatus], bool],
        timeout: float,
        what: str,
        hint: str | None = None,
    ) -> RolloutStatus:
        """Poll until ``done``; on a timeout say what is missing. ``hint`` replaces the
        controller hint once the controller has observed the spec (so it is running)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.status()
            if time.monotonic() - self._events_synced_at >= 1.0:
                self.sync_events()  # Events are context: once a second is plenty
            if done(snap):
                self.sync_events()
                return snap
            if snap.exists and snap.phase == "Failed":
                raise RolloutError(
                    f"{self.namespace}/{self.name} failed while waiting for {what}: "
                    f"{snap.problem or 'see its conditions (kubectl describe cdep)'}"
                )
            if time.monotonic() > deadline:
                problem = f"; {snap.problem}" if snap.problem else ""
                advice = hint if hint and snap.observed else self.controller_hint
                raise RolloutError(
                    f"timed out after {timeout:.0f}s waiting for {what} "
                    f"({snap.brief()}{problem}); {advice}"
                )
            time.sleep(self.poll_s)

    def _observe(self, snap: RolloutStatus) -> None:
        """Record a ``status`` event when phase, weights or readiness changed."""
        key = (
            snap.exists,
            snap.phase,
            snap.desired_weight,
            snap.applied_weight,
            snap.ready_replicas,
        )
        if key == self._last_seen:
            return
        self._last_seen = key
        self.recorder.event(
            Kind.STATUS,
            message=snap.brief(),
            phase=snap.phase if snap.exists else "Absent",
            desired_weight=snap.desired_weight,
            applied_weight=snap.applied_weight,
            ready_replicas=snap.ready_replicas,
            replicas=snap.replicas,
        )

    def sync_events(self) -> None:
        """Record Kubernetes Events on the CanaryDeployment not recorded yet."""
        from kubernetes.client.rest import ApiException

        self._events_synced_at = time.monotonic()
        if isinstance(self.recorder, _NoRecorder):
            return
        try:
            events = self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.name={self.name},involvedObject.kind={st.KIND}",
            ).items
        except ApiException:
            return  # Events are best-effort context; never fail a rollout over them
        for ev in events:
            uid = ev.metadata.uid
            count = int(ev.count or 1)
            if self._seen_events.get(uid, 0) >= count:
                continue
            self._seen_events[uid] = count
            when = ev.last_timestamp or ev.event_time or ev.first_timestamp
            self.recorder.event(
                Kind.EVENT,
                message=ev.message or "",
                reason=ev.reason or "",
                type=ev.type or "",
                event_time=when.isoformat() if when else None,
                count=count,
            )

    def _api_error(self, what: str, err: Any) -> RolloutError:
        return RolloutError(
            f"could not {what} CanaryDeployment {self.namespace}/{self.name}: {manifest.api_reason(err)}"
        )
