"""Where the shipped runbooks and notebooks are: this checkout's, else the installed wheel's.

A wheel carries ``runbooks/`` and ``notebooks/`` as package data (``canarylab.runbooks``,
``canarylab.notebooks``; see pyproject.toml), so ``canarylab run canary-rollout``,
``canarylab demo`` and ``canarylab dashboard`` work outside a checkout too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

Shipped = Literal["runbooks", "notebooks"]


def shipped(kind: Shipped) -> Path:
    """The directory of the shipped ``kind``: the checkout's when run from one."""
    checkout = Path(__file__).resolve().parents[2] / kind
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec(f"canarylab.{kind}")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    return checkout  # absent: callers say what is missing
