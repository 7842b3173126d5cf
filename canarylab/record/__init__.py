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

from canarylab.record.reader import Record, load
from canarylab.record.writer import SCHEMA_VERSION, Recorder

__all__ = ["SCHEMA_VERSION", "Record", "Recorder", "load"]
