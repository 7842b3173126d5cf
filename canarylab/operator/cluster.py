"""The Kubernetes reads and writes the controller makes, outside the routers.

CanaryDeployments, Deployments, Services and Events through the official client, as
plain camelCase dicts. Each write is idempotent (create-or-update, delete-if-present)
so a pass interrupted anywhere can simply run again. This module must never decide
what to do; it only does what ``canarylab.model`` decided.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from canarylab.errors import CanarylabError
from canarylab.model.spec import GROUP, KIND, PLURAL, VERSION
from canarylab.model.workload import CANARY_LABEL, TEMPLATE_HASH, owner_reference
from canarylab.routers.base import AbsentRoutes

log = logging.getLogger("canarylab.controller")

RAW: dict[str, Any] = {"_preload_content": False}
"""For writes whose answer we ignore: skip building typed models from the response
(most of a pass's CPU time with the generated client)."""


def _drain(response: Any) -> None:
    """Read and release a raw response, so its connection goes back to the pool."""
    response.read()
    response.release_conn()


class Rejected(CanarylabError):
    """The API server refused an object we wrote (HTTP 422/400); the message says why."""


def api_message(err: ApiException) -> str:
    """The human part of an API error body."""
    try:
        return str(json.loads(err.body).get("message") or err.reason)
    except (TypeError, ValueError):
        return str(err.reason)


def now(moment: dt.datetime | None = None) -> str:
    """``moment`` (default: the clock) as an RFC 3339 timestamp in whole seconds, UTC."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_parent(meta: Mapping[str, Any], parent: Mapping[str, Any]) -> list[Any] | None:
    """``meta``'s ownerReferences with ``parent`` as its (non-controller) Deployment
    owner, or None when it already is."""
    refs = list(meta.get("ownerReferences") or [])
    uid = parent["metadata"]["uid"]
    if any(r.get("uid") == uid for r in refs):
        return None
    refs = [r for r in refs if r.get("kind") != "Deployment"]
    refs.append(
        owner_reference("apps/v1", "Deployment", parent["metadata"]["name"], uid, controller=False)
    )
    return refs


class Cluster:
    """Typed-ish access to the objects one namespace's canaries touch."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        # Events are posted off the reconcile path: a pass never waits for them.
        self._events = ThreadPoolExecutor(2, thread_name_prefix="canarylab-events")
        self.absent_routes: AbsentRoutes = set()
        """Managed routes this controller deleted or found missing (see ``AbsentRoutes``)."""

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.api_client.sanitize_for_serialization(obj))

    # CanaryDeployments

    def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            _drain(
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, **RAW
                )
            )
        except ApiException as err:
            if err.status != 404:
                raise

    @staticmethod
    def claim_patch(
        meta: Mapping[str, Any], finalizer: str, parent: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The metadata a CanaryDeployment lacks: our finalizer, and ``parent`` (if
        given) as its owner; None when it has both."""
        patch: dict[str, Any] = {}
        finalizers = list(meta.get("finalizers") or ())
        if finalizer not in finalizers:
            patch["finalizers"] = [*finalizers, finalizer]
        refs = _with_parent(meta, parent) if parent is not None else None
        if refs is not None:
            patch["ownerReferences"] = refs
        return patch or None

    def claim(self, cd: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
        """Write ``claim_patch``'s metadata: the finalizer holds the deletion until
        ``remove_finalizer``; one write where a finalizer and an adoption took two.

        Guarded by the body's resourceVersion (the lists are replaced whole); False when
        the object changed or went meanwhile: the watch brings the newer body.
        """
        meta = cd["metadata"]
        body = {"metadata": {**patch, "resourceVersion": meta["resourceVersion"]}}
        try:
            _drain(
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body, **RAW
                )
            )
        except ApiException as err:
            if err.status in (404, 409):
                return False
            raise
        return True

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Let the CanaryDeployment go (a JSON patch that tests the entry it removes)."""
        for _ in range(5):
            try:
                current = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name
                )
            except ApiException as err:
                if err.status == 404:
                    return
                raise
            finalizers = list((current.get("metadata") or {}).get("finalizers") or ())
            if finalizer not in finalizers:
                return
            at = finalizers.index(finalizer)
            ops = [
                {"op": "test", "path": f"/metadata/finalizers/{at}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{at}"},
            ]
            try:
                _drain(
                    self.custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        name,
                        ops,
                        _content_type="application/json-patch+json",
                        **RAW,
                    )
                )
                return
            except ApiException as err:
                if err.status == 404:
                    return
                if err.status not in (409, 422):  # the list moved: read it again
                    raise
        raise CanarylabError(f"the finalizers of {namespace}/{name} kept changing; retrying")

    def adopt_by_parent(self, cd: Mapping[str, Any], parent: Mapping[str, Any]) -> None:
        """Make the parent Deployment an owner (not controller) of the CanaryDeployment."""
        meta = cd["metadata"]
        refs = _with_parent(meta, parent)
        if refs is None:
            return
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}}
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], patch
            )
        except ApiException as err:
            if err.status not in (404, 409):  # gone, or changed: the next pass retries
                raise

    # Deployments

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(self.apps.read_namespaced_deployment(name, namespace))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def ensure_deployment(
        self, namespace: str, manifest: dict[str, Any], cached: Mapping[str, Any] | None
    ) -> None:
        """Create the canary Deployment, or bring replicas/template/labels up to date.

        ``cached`` (from the watch cache, possibly trimmed) decides whether anything
        needs writing; an update re-reads the full object first.
        """
        want_hash = manifest["metadata"]["annotations"][TEMPLATE_HASH]
        if cached is not None and (
            ((cached.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH)
            == want_hash
            and (cached.get("spec") or {}).get("replicas") == manifest["spec"]["replicas"]
            and (((cached.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                "labels"
            )
            == manifest["spec"]["template"]["metadata"]["labels"]
        ):
            return
        try:
            current = (
                None
                if cached is None
                else self.get_deployment(namespace, manifest["metadata"]["name"])
            )
            if current is None:
                _drain(self.apps.create_namespaced_deployment(namespace, manifest, **RAW))
                return
            meta = current["metadata"]
            meta.setdefault("annotations", {})[TEMPLATE_HASH] = want_hash
            meta.setdefault("labels", {}).update(manifest["metadata"]["labels"])
            current["spec"]["replicas"] = manifest["spec"]["replicas"]
            current["spec"]["template"] = manifest["spec"]["template"]
            current.pop("status", None)
            _drain(self.apps.replace_namespaced_deployment(meta["name"], namespace, current, **RAW))
        except ApiException as err:
            if err.status in (400, 422):
                raise Rejected(
                    f"the API server rejected the canary Deployment: {api_message(err)}"
                ) from err
            if err.status != 409:
                raise

    def copy_template_to_parent(
        self, namespace: str, parent: str, template: Mapping[str, Any], template_hash: str
    ) -> None:
        current = self.get_deployment(namespace, parent)
        if current is None:
            return
        current["metadata"].setdefault("annotations", {})[TEMPLATE_HASH] = template_hash
        current["spec"]["template"] = dict(template)
        current.pop("status", None)
        try:
            _drain(self.apps.replace_namespaced_deployment(parent, namespace, current, **RAW))
        except ApiException as err:
            if err.status in (400, 422):
                raise Rejected(
                    f"the API server rejected the template for Deployment {parent}: "
                    f"{api_message(err)}"
                ) from err
            if err.status != 409:
                raise

    # Services

    def ensure_service(
        self, namespace: str, manifest: dict[str, Any], current: Mapping[str, Any] | None
    ) -> None:
        try:
            if current is None:
                _drain(self.core.create_namespaced_service(namespace, manifest, **RAW))
                return
            have = current.get("spec") or {}
            want = manifest["spec"]
            same_ports = [
                {k: p.get(k) for k in ("name", "port", "protocol")} for p in have.get("ports") or ()
            ] == [
                {
                    k: p.get(k, "TCP" if k == "protocol" else None)
                    for k in ("name", "port", "protocol")
                }
                for p in want["ports"]
            ]
            if same_ports and have.get("selector") == want["selector"]:
                return
            patch = {"spec": {"ports": want["ports"], "selector": want["selector"]}}
            _drain(
                self.core.patch_namespaced_service(
                    manifest["metadata"]["name"], namespace, patch, **RAW
                )
            )
        except ApiException as err:
            if err.status in (400, 422):
                raise Rejected(
                    f"the API server rejected the canary Service: {api_message(err)}"
                ) from err
            if err.status != 409:
                raise

    def delete_owned(self, namespace: str, cd_name: str, cd_uid: str) -> None:
        """Delete the Deployments and Services this canary owns (found by label and owner)."""
        selector = f"{CANARY_LABEL}={cd_name}"

        def owned(obj: Any) -> bool:
            refs = obj.metadata.owner_references or []
            return any(r.uid == cd_uid for r in refs)

        for d in self.apps.list_namespaced_deployment(namespace, label_selector=selector).items:
            if owned(d):
                self._ignore_404(
                    self.apps.delete_namespaced_deployment,
                    d.metadata.name,
                    namespace,
                    propagation_policy="Background",
                )
        for s in self.core.list_namespaced_service(namespace, label_selector=selector).items:
            if owned(s):
                self._ignore_404(self.core.delete_namespaced_service, s.metadata.name, namespace)

    @staticmethod
    def _ignore_404(call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except ApiException as err:
            if err.status != 404:
                raise

    # Events

    def event(self, cd: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event on the CanaryDeployment, in the background (best effort)."""
        self._events.submit(self._post_event, cd, kind, reason, message)

    def _post_event(self, cd: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = cd["metadata"]
        stamp = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": "canarylab-controller"},
            "reportingComponent": "canarylab.io/controller",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            _drain(self.core.create_namespaced_event(meta["namespace"], body, **RAW))
        except ApiException as err:  # Events are best effort; say so in the log only
            log.warning("could not post Event %s on %s: %s", reason, meta["name"], err.reason)
