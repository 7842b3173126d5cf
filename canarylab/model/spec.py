"""The CanaryDeployment spec as frozen values, parsed from the API object.

The CRD schema already rejects most bad input at the API server; this parser is the
second line for clusters where the CRD is older than the controller, and it turns
what is left into a ``SpecError`` whose message names the field. It must never
import a Kubernetes client or do any I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canarylab.errors import CanarylabError
from canarylab.model.lease import FIELD as LEASE_FIELD
from canarylab.model.lease import LeaseError, LeaseSpec, parse_lease

GROUP = "canarylab.io"
VERSION = "v1alpha1"
PLURAL = "canarydeployments"
KIND = "CanaryDeployment"


class SpecError(CanarylabError):
    """A CanaryDeployment spec that the controller cannot act on."""


@dataclass(frozen=True)
class TrafficSplit:
    """Weights for the parent and canary backends; they add up to 100."""

    parent: int
    canary: int

    @classmethod
    def for_canary(cls, canary: int) -> TrafficSplit:
        """The split that gives the canary ``canary`` percent."""
        return cls(100 - canary, canary)


@dataclass(frozen=True)
class ValueMatch:
    """One header or cookie condition: ``name`` compared with ``value``."""

    name: str
    value: str
    type: str = "Exact"
    """``Exact`` or ``RegularExpression``."""


@dataclass(frozen=True)
class Match:
    """Requests that go to the canary whatever the weight; every condition must hold."""

    headers: tuple[ValueMatch, ...] = ()
    cookies: tuple[ValueMatch, ...] = ()
    remote_addrs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.headers or self.cookies or self.remote_addrs)


@dataclass(frozen=True)
class RouterRef:
    """Which router and which route: ``kind`` is the key under ``spec.trafficRouter``."""

    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str:
        """The referenced route's name (empty for plugin routers that have none)."""
        return str(self.config.get("route") or self.config.get("httpRoute") or "")


@dataclass(frozen=True)
class CanarySpec:
    """What the user asked for."""

    parent: str
    version: str
    template: Mapping[str, Any]
    router: RouterRef
    replicas: int = 1
    weight: int = 0
    replace: bool = False
    aborted: bool = False
    """Held at weight 0 with all traffic on the parent (phase ``Aborted``) until cleared."""
    match: Match = Match()
    lease: LeaseSpec | None = None
    """The driver's lease; None for a canary nobody drives (made by hand)."""

    @property
    def template_hash(self) -> str:
        """A short stable digest of the template, to tell whether the parent carries it."""
        text = json.dumps(self.template, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _value_matches(items: Any, where: str) -> tuple[ValueMatch, ...]:
    out = []
    for i, item in enumerate(items or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise SpecError(f"{where}[{i}] needs a name and a value")
        kind = item.get("type", "Exact")
        if kind not in ("Exact", "RegularExpression"):
            raise SpecError(f"{where}[{i}].type must be Exact or RegularExpression, not {kind!r}")
        out.append(ValueMatch(str(item["name"]), str(item.get("value", "")), kind))
    return tuple(out)


def parse_match(raw: Any) -> Match:
    """``spec.match`` as a ``Match`` (empty when absent)."""
    if not raw:
        return Match()
    if not isinstance(raw, Mapping):
        raise SpecError("spec.match must be an object with headers, cookies or remoteAddrs")
    return Match(
        headers=_value_matches(raw.get("headers"), "spec.match.headers"),
        cookies=_value_matches(raw.get("cookies"), "spec.match.cookies"),
        remote_addrs=tuple(str(a) for a in raw.get("remoteAddrs") or ()),
    )


def parse_router(raw: Any) -> RouterRef:
    """``spec.trafficRouter``: exactly one key, naming the router."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec.trafficRouter is required: set exactly one of apisix or gatewayAPI")
    keys = [k for k, v in raw.items() if v is not None]
    if len(keys) != 1:
        raise SpecError(
            f"spec.trafficRouter must set exactly one router, found {sorted(keys) or 'none'}"
        )
    kind = keys[0]
    config = raw[kind]
    if not isinstance(config, Mapping):
        raise SpecError(f"spec.trafficRouter.{kind} must be an object")
    if kind == "plugin":
        return RouterRef(str(config.get("name", "")), dict(config.get("config") or {}))
    return RouterRef(kind, dict(config))


def parse_spec(raw: Mapping[str, Any]) -> CanarySpec:
    """Turn ``spec`` (a plain dict from the API) into a ``CanarySpec``."""
    parent = raw.get("parentDeployment")
    version = raw.get("version")
    template = raw.get("template")
    if not parent:
        raise SpecError("spec.parentDeployment is required: the name of the original Deployment")
    if not version:
        raise SpecError("spec.version is required: the canary's version label value")
    if not isinstance(template, Mapping):
        raise SpecError("spec.template is required: a pod template for the canary")
    weight = raw.get("weight", 0)
    replicas = raw.get("replicas", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
        raise SpecError(f"spec.weight must be an integer from 0 to 100, not {weight!r}")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise SpecError(f"spec.replicas must be an integer ≥ 0, not {replicas!r}")
    try:
        lease = parse_lease(raw.get(LEASE_FIELD))
    except LeaseError as err:
        raise SpecError(str(err)) from None
    return CanarySpec(
        parent=str(parent),
        version=str(version),
        template=template,
        router=parse_router(raw.get("trafficRouter")),
        replicas=replicas,
        weight=weight,
        replace=bool(raw.get("replace", False)),
        aborted=bool(raw.get("aborted", False)),
        match=parse_match(raw.get("match")),
        lease=lease,
    )
