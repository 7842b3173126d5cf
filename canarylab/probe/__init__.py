"""The probe: how much traffic the original, the canary and failures get.

``await probe(url, duration=..., rate=...)`` or ``Probe(ProbeSettings(...))`` (asyncio,
``run()`` or the live ``stream()``), and ``run_wrk`` for rates beyond Python. Both give
per-request results and per-second samples in the schema of docs/architecture.md.

The probe sees only URLs: it must never import a Kubernetes client or the operator.
"""

from canarylab.probe.engine import DEFAULT_HEADER, Probe, ProbeResult, ProbeSettings, probe
from canarylab.probe.samples import SAMPLE_COLUMNS, summarize, to_samples

__all__ = [
    "DEFAULT_HEADER",
    "SAMPLE_COLUMNS",
    "Probe",
    "ProbeResult",
    "ProbeSettings",
    "probe",
    "summarize",
    "to_samples",
]
