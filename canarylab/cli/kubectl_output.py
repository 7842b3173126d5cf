"""How the rollout verbs show CanaryDeployments: the way ``kubectl get`` does.

The table's columns are the CRD's ``additionalPrinterColumns`` (read from the packaged
CRD, so ``canarylab get`` and ``kubectl get cdep`` never disagree); ``-o wide`` adds the
``priority: 1`` ones. ``-o json|yaml`` print the object as the API returns it, without
``metadata.managedFields``, and several objects as a ``List``. Pure text: this module
must never call the API server.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMATS = ("table", "wide", "json", "yaml", "name")
"""The values of ``-o`` (``table`` is the default, kubectl's plain output)."""


@dataclass(frozen=True)
class Column:
    """One printer column of the CRD."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    """0: always shown; 1: only with ``-o wide``."""


def printer_columns(crd: Mapping[str, Any]) -> list[Column]:
    """``NAME`` and the ``additionalPrinterColumns`` of the CRD's first version."""
    version = crd["spec"]["versions"][0]
    return [Column("NAME", ".metadata.name")] + [
        Column(
            str(c["name"]).upper(),
            str(c["jsonPath"]),
            str(c.get("type", "string")),
            int(c.get("priority", 0)),
        )
        for c in version.get("additionalPrinterColumns") or ()
    ]


def packaged_columns() -> list[Column]:
    """The printer columns of the CanaryDeployment CRD shipped with canarylab."""
    import yaml

    from canarylab.cli.controller import crd_files

    (path,) = [p for p in crd_files() if p.name.startswith("canarydeployments.")]
    return printer_columns(yaml.safe_load(path.read_text()))


def lookup(obj: Mapping[str, Any], json_path: str) -> Any:
    """The value at a simple JSONPath (``.a.b.c``), or None when any step is missing."""
    value: Any = obj
    for key in json_path.strip(".").split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def age(created: str, now: dt.datetime) -> str:
    """kubectl's short age: ``42s``, ``3m12s``, ``25m``, ``5h10m``, ``30h``, ``3d4h``, ``20d``."""
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    s = max(0, int((now - start).total_seconds()))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{d}d{h % 24}h"
    if d < 730:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d"


def cell(obj: Mapping[str, Any], column: Column, now: dt.datetime) -> str:
    value = lookup(obj, column.json_path)
    if value is None or value == "":
        return "<none>" if column.priority else ""
    if column.type == "date":
        return age(str(value), now)
    return str(value)


def table(
    objs: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    now: dt.datetime,
    *,
    wide: bool = False,
    headers: bool = True,
) -> str:
    """Rows aligned as kubectl aligns them (three spaces between columns)."""
    shown = [c for c in columns if wide or not c.priority]
    rows = [[cell(o, c, now) for c in shown] for o in objs]
    if headers:
        rows.insert(0, [c.name for c in shown])
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(shown))]
    return "\n".join(
        "   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as ``kubectl get -o yaml`` shows it: no ``metadata.managedFields``."""
    out = dict(obj)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    out["metadata"] = meta
    return out


def render(objs: Sequence[Mapping[str, Any]], output: str, *, single: bool) -> str:
    """``-o json|yaml|name``; ``single``: one object asked for by name, not a list."""
    if output == "name":
        return "\n".join(
            f"canarydeployment.canarylab.io/{lookup(o, '.metadata.name')}" for o in objs
        )
    cleaned = [clean(o) for o in objs]
    doc: Any = (
        cleaned[0]
        if single and len(cleaned) == 1
        else {"apiVersion": "v1", "kind": "List", "items": cleaned, "metadata": {}}
    )
    if output == "json":
        return json.dumps(doc, indent=4)
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False)).rstrip("\n")
    raise ValueError(f"output must be one of {', '.join(FORMATS)}, not {output!r}")


def watch_key(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What must change for ``-w`` to print the object again (not lease renewals)."""
    if obj is None:
        return ("absent",)
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    return (
        spec.get("weight"),
        spec.get("replace"),
        spec.get("aborted"),
        status.get("phase"),
        json.dumps(status.get("weights"), sort_keys=True),
        json.dumps(status.get("canary"), sort_keys=True),
        status.get("reason"),
        status.get("message"),
        bool((obj.get("metadata") or {}).get("deletionTimestamp")),
    )
