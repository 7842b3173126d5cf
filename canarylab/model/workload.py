"""Deployments as the controller sees them, and the canary objects it owns.

Holds the kubectl rollout-finished rule, the naming and labelling of the canary
Deployment and Service, and their manifests, all as pure functions over plain dicts.
It must never import a Kubernetes client or do any I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.spec import GROUP, KIND, VERSION, CanarySpec

CANARY_LABEL = "canarylab.io/canary"
"""On canary pods, Deployment and Service: the CanaryDeployment's name."""
VERSION_LABEL = "canarylab.io/version"
"""On canary pods: ``spec.version``."""
TEMPLATE_HASH = "canarylab.io/template-hash"
"""On a parent Deployment after a replace: the digest of the template it was given."""
MANAGED_BY = "app.kubernetes.io/managed-by"
ORIGINAL_SUBSET = "original"
"""In APISIX subset mode: the ApisixUpstream subset holding the parent's pods."""
CANARY_SUBSET = "canary"
"""In APISIX subset mode: the ApisixUpstream subset holding the canary's pods."""


@dataclass(frozen=True)
class DeploymentState:
    """The fields of a Deployment that decisions depend on."""

    name: str
    uid: str = ""
    generation: int = 0
    observed_generation: int = 0
    spec_replicas: int = 1
    replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    ready_replicas: int = 0
    template_hash: str = ""
    """The ``canarylab.io/template-hash`` annotation (empty when absent)."""
    pod_labels: Mapping[str, str] | None = None
    selector: Mapping[str, str] | None = None
    owner_uids: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> DeploymentState:
        """Build from a Deployment as a camelCase dict."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        template_meta = (spec.get("template") or {}).get("metadata") or {}
        replicas = spec.get("replicas")
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            spec_replicas=1 if replicas is None else int(replicas),
            replicas=int(status.get("replicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            template_hash=str((meta.get("annotations") or {}).get(TEMPLATE_HASH, "")),
            pod_labels=dict(template_meta.get("labels") or {}),
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            owner_uids=tuple(str(o.get("uid")) for o in meta.get("ownerReferences") or ()),
        )


def rollout_finished(d: DeploymentState) -> bool:
    """True when ``kubectl rollout status`` would report the rollout as complete."""
    return (
        d.generation <= d.observed_generation
        and d.updated_replicas == d.spec_replicas
        and d.replicas == d.updated_replicas
        and d.available_replicas == d.updated_replicas
    )


def rollout_progress(d: DeploymentState) -> str:
    """A one-line account of a rollout, in kubectl's words, for status messages."""
    if d.generation > d.observed_generation:
        return "waiting for the deployment spec update to be observed"
    if d.updated_replicas < d.spec_replicas:
        return f"{d.updated_replicas} of {d.spec_replicas} updated replicas are available"
    if d.replicas > d.updated_replicas:
        return f"{d.replicas - d.updated_replicas} old replicas are pending termination"
    if d.available_replicas < d.updated_replicas:
        return f"{d.available_replicas} of {d.updated_replicas} updated replicas are available"
    return "successfully rolled out"


def canary_deployment_name(spec: CanarySpec) -> str:
    """``<parent>-canary``: one canary per parent, so the name is stable across versions."""
    return canary_deployment_name_for(spec.parent)


def canary_deployment_name_for(parent: str) -> str:
    """The canary Deployment's name for a parent Deployment's name."""
    return f"{parent}-canary"


def canary_service_name(parent_service: str) -> str:
    """``<parent service>-canary``."""
    return f"{parent_service}-canary"


def owner_reference(
    api_version: str, kind: str, name: str, uid: str, *, controller: bool
) -> dict[str, Any]:
    """An ownerReference; only controller references block the owner's deletion."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def canary_owner(name: str, uid: str) -> dict[str, Any]:
    """The controller ownerReference that every canary-owned object carries."""
    return owner_reference(f"{GROUP}/{VERSION}", KIND, name, uid, controller=True)


def subset_mode(spec: CanarySpec) -> bool:
    """``trafficRouter.apisix.mode: subset``: the canary is a subset of the parent's Service."""
    return spec.router.kind == "apisix" and spec.router.config.get("mode") == "subset"


@dataclass(frozen=True)
class PodSubsets:
    """The label sets of the ``original`` and ``canary`` subsets of the parent's Service.

    APISIX picks a subset's pods among the Service's endpoints, so each label set only
    needs to tell parent pods from canary pods. ``problem`` says why no such sets exist.
    """

    original: Mapping[str, str]
    canary: Mapping[str, str]
    problem: str = ""


def pod_subsets(cd_name: str, spec: CanarySpec, parent: DeploymentState) -> PodSubsets:
    """The subsets for subset mode.

    ``original`` is the parent's pods by their ``canarylab.io/version`` label (canary
    pods carry the canary's version and the parent's selector labels, so a version is
    what tells them apart); ``canary`` is this canary's pods. While a replace is under
    way the parent's pods change version, so ``original`` widens to the parent's
    selector alone: it then also holds canary pods, but it can never run empty while
    it carries weight (the canary is complete before the template is copied).
    """
    selector = dict(parent.selector or {})
    canary = {CANARY_LABEL: cd_name, VERSION_LABEL: spec.version}
    if spec.replace:
        return PodSubsets(selector, canary)
    version = (parent.pod_labels or {}).get(VERSION_LABEL)
    if not version:
        return PodSubsets(
            {},
            canary,
            f"mode: subset needs the parent's pods labelled with their version: add "
            f"{VERSION_LABEL}: <version> to spec.template.metadata.labels of Deployment "
            f"{spec.parent} (its pods roll once), or use mode: service",
        )
    if version == spec.version:
        return PodSubsets(
            {},
            canary,
            f"spec.version {spec.version!r} is also the {VERSION_LABEL} of Deployment "
            f"{spec.parent}'s pods, so the original and canary subsets would overlap; "
            "give the canary another version",
        )
    return PodSubsets({**selector, VERSION_LABEL: version}, canary)


def canary_pod_labels(
    cd_name: str, spec: CanarySpec, parent_selector: Mapping[str, str]
) -> dict[str, str]:
    """The template's labels, with the parent's selector handled per mode, plus canary labels.

    In service mode the parent's selector keys are dropped, which keeps the parent
    Deployment and the parent Service from ever selecting canary pods, so the route's
    weights are the real split. In subset mode they are set to the parent's values,
    so the parent Service selects canary pods too and the ApisixUpstream's subsets
    (by ``canarylab.io/version``) split them.
    """
    labels = dict((spec.template.get("metadata") or {}).get("labels") or {})
    for key, value in parent_selector.items():
        if subset_mode(spec):
            labels[key] = value
        else:
            labels.pop(key, None)
    labels[CANARY_LABEL] = cd_name
    labels[VERSION_LABEL] = spec.version
    return labels


def canary_deployment(
    cd_name: str, cd_uid: str, spec: CanarySpec, parent_selector: Mapping[str, str]
) -> dict[str, Any]:
    """The canary Deployment manifest."""
    template = copy.deepcopy(dict(spec.template))
    meta = dict(template.get("metadata") or {})
    meta["labels"] = canary_pod_labels(cd_name, spec, parent_selector)
    template["metadata"] = meta
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_deployment_name(spec),
            "labels": {CANARY_LABEL: cd_name, VERSION_LABEL: spec.version, MANAGED_BY: "canarylab"},
            "annotations": {TEMPLATE_HASH: spec.template_hash},
            "ownerReferences": [canary_owner(cd_name, cd_uid)],
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {CANARY_LABEL: cd_name}},
            "template": template,
        },
    }


def canary_service(cd_name: str, cd_uid: str, parent_service: Mapping[str, Any]) -> dict[str, Any]:
    """The canary Service: the parent Service's ports, selecting only canary pods."""
    ports = []
    for port in (parent_service.get("spec") or {}).get("ports") or ():
        kept = {
            k: port[k]
            for k in ("name", "port", "targetPort", "protocol", "appProtocol")
            if k in port
        }
        ports.append(kept)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": canary_service_name(str(parent_service["metadata"]["name"])),
            "labels": {CANARY_LABEL: cd_name, MANAGED_BY: "canarylab"},
            "ownerReferences": [canary_owner(cd_name, cd_uid)],
        },
        "spec": {"type": "ClusterIP", "ports": ports, "selector": {CANARY_LABEL: cd_name}},
    }


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service-style selector: non-empty and every pair present in ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
