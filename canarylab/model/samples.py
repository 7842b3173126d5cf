"""The probe's output schema, shared by everything that reads traffic.

Per-second samples (one row per second and version) and per-request results, as
documented in docs/architecture.md. The probe writes them; gates, the recorder, the
replay and the charts read them. Names only: this module must never do I/O.
"""

from __future__ import annotations

UNKNOWN_VERSION = "unknown"
"""The version of a response that carried none, or of a request with no response."""

FAILURE_KINDS = ("http_errors", "timeouts", "conn_errors")
"""Failure counters of a sample; their sum is the second's failed requests."""

SAMPLE_COLUMNS = (
    "second",
    "version",
    "requests",
    "ok",
    *FAILURE_KINDS,
    "p50_ms",
    "p95_ms",
    "p99_ms",
)
"""Columns of the per-second samples, in order."""

REQUEST_COLUMNS = ("t", "version", "status", "latency_ms", "error")
"""``t`` is the completion time (Unix seconds); ``error`` is None, ``http_error``,
``timeout`` or ``conn_error``; ``status`` is 0 when no response arrived."""
