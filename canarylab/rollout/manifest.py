"""The CanaryDeployment a ``Rollout`` asks for, built as plain data.

Pure functions: the canary's pod template from the parent's, the ``trafficRouter``
block, argument checks, and turning an API error into one readable sentence. Must never
call the API server.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from canarylab.errors import CanarylabError


class RolloutError(CanarylabError):
    """A rollout action could not be done; the message says what to do."""


def template_from_parent(
    parent_template: Mapping[str, Any], image: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """The parent's pod template with its first container's image replaced and ``env`` merged."""
    template = copy.deepcopy(dict(parent_template))
    container = template["spec"]["containers"][0]
    container["image"] = image
    if env:
        kept = [e for e in container.get("env") or [] if e.get("name") not in env]
        container["env"] = kept + [{"name": k, "value": str(v)} for k, v in env.items()]
    meta = template.get("metadata") or {}
    template["metadata"] = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
    return template


def router_config(
    kind: str, route: str, rules: list[Any] | None, port: int | str | None
) -> dict[str, Any]:
    if kind == "apisix":
        cfg: dict[str, Any] = {"route": route}
        if port is not None:
            cfg["servicePort"] = port
    elif kind == "gatewayAPI":
        cfg = {"httpRoute": route}
        if port is not None:
            cfg["port"] = port
    else:
        raise RolloutError(f"router must be 'apisix' or 'gatewayAPI', got {kind!r}")
    if rules:
        cfg["rules"] = list(rules)
    return {kind: cfg}


def check_weight(weight: int) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise RolloutError(f"weight must be an integer from 0 to 100, got {weight!r}")


def api_reason(err: Any) -> str:
    body = getattr(err, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return f"{getattr(err, 'status', '')} {getattr(err, 'reason', err)}".strip()
