"""Records of rollouts: one directory per rollout, written as it happens.

A record holds what a postmortem needs: the operator's actions (who, when, what, the
result), the resource's phase and weight changes, Kubernetes Events, gate verdicts, and
the probe's per-second samples (plus per-request results when kept). The layout is
documented in docs/record.md:

- ``metadata.json`` — what was rolled out, where, when, with which parameters;
- ``events.jsonl`` — the event stream, one JSON object a line, flushed per event;
- ``samples/part-NNNNNN.parquet`` — per-second, per-version probe samples;
- ``requests/part-NNNNNN.parquet`` — per-request results (optional).

Parquet parts are small and renamed into place only when complete, so a crash loses at
most the part being written (about the last second). This package never talks to a
cluster or the network; callers hand it what they observed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from canarylab.record.reader import Record, load
    from canarylab.record.writer import SCHEMA_VERSION, Recorder

# Loaded on first use: ``canarylab.record.events`` (the vocabulary the CLI and the
# controller's image share) must not drag pandas and pyarrow in with it.
_LAZY = {
    "Record": "canarylab.record.reader",
    "load": "canarylab.record.reader",
    "SCHEMA_VERSION": "canarylab.record.writer",
    "Recorder": "canarylab.record.writer",
}

__all__ = ["SCHEMA_VERSION", "Record", "Recorder", "load"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
