"""canarylab: canary rollouts on Kubernetes, driven from Jupyter.

Layers, top to bottom (checked by import-linter, see ``.importlinter``):
notebook helpers and the CLI; rollout primitives, probe and recorder; the
operator; pure models and decisions. The sandbox stands beside them.

The names below are exported lazily, so ``import canarylab`` stays cheap and does
not pull in the Kubernetes client until a rollout is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Rollout": "canarylab.rollout",
    "RolloutStatus": "canarylab.rollout",
    "GateFailed": "canarylab.rollout",
    "Sandbox": "canarylab.sandbox",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'canarylab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
