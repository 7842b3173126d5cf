"""The ``wrk`` engine: Debian's wrk with a Lua script that classifies like the probe.

For rates beyond what Python reaches. The Lua script counts responses per (second,
version, outcome) in every wrk thread, classifying by the same response header as the
asyncio probe (default ``X-Canarylab-Version``); ``done`` prints the counts, wrk's
latency percentiles and its socket errors. Python turns that into the same request
and sample frames as the asyncio engine.

Limits, because wrk's Lua API has no per-request latency and counts socket errors
only in total: samples carry NaN latency (the summary holds wrk's overall
percentiles under ``"all"``), and timeouts and connection errors are put in the last
second under version ``unknown``. wrk has no target rate and no body regex here.
This module must never talk to Kubernetes.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canarylab.probe.engine import ProbeResult, ProbeSettings
from canarylab.probe.samples import UNKNOWN, requests_frame

LUA = r"""
-- canarylab: classify every response by a header, count per (second, version, outcome).
local want = string.lower(os.getenv("CANARYLAB_CLASSIFY_HEADER") or "x-canarylab-version")
counts = {}

function response(status, headers, body)
  local version = "unknown"
  for name, value in pairs(headers) do
    if string.lower(name) == want then version = value break end
  end
  local outcome = "ok"
  if status < 200 or status > 299 then outcome = "http_error" end
  local key = os.time() .. " " .. status .. " " .. outcome .. " " .. version
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads_list) do
    local c = thread:get("counts")
    for key, n in pairs(c) do io.write("C ", key, " ", n, "\n") end
  end
  io.write(string.format("L %f %f %f\n", latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  local e = summary.errors
  io.write(string.format("E %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("T %d %d\n", summary.duration, summary.requests))
end

threads_list = {}
function setup(thread) table.insert(threads_list, thread) end
"""


@dataclass
class WrkResult(ProbeResult):
    """A probe result from wrk: latency percentiles exist only overall."""

    latency_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        summary["latency_ms"] = {"all": self.latency_ms}
        summary["engine"] = "wrk"
        return summary


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError(
            "the wrk engine needs wrk, which is not installed: run `make system-deps` "
            "(or `sudo apt-get install wrk`), or use the asyncio engine"
        )
    return found


def parse_output(text: str, end: float) -> tuple[dict[str, list[Any]], dict[str, float], int]:
    """wrk's output → per-request columns, overall latency, requests wrk counted."""
    columns: dict[str, list[Any]] = {
        k: [] for k in ("t", "version", "status", "latency_ms", "error")
    }
    latency: dict[str, float] = {}
    total = 0
    errors = (0, 0)
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[0] == "C" and len(parts) >= 6:
            second, status, outcome, count = int(parts[1]), int(parts[2]), parts[3], int(parts[-1])
            version = " ".join(parts[4:-1]) or UNKNOWN
            error = None if outcome == "ok" else "http_error"
            columns["t"] += [second + 0.5] * count
            columns["version"] += [version] * count
            columns["status"] += [status] * count
            columns["latency_ms"] += [math.nan] * count
            columns["error"] += [error] * count
        elif parts[0] == "L" and len(parts) == 4:
            latency = {
                "p50_ms": round(float(parts[1]), 3),
                "p95_ms": round(float(parts[2]), 3),
                "p99_ms": round(float(parts[3]), 3),
            }
        elif parts[0] == "E" and len(parts) == 5:
            connect, read, write, timeout = (int(p) for p in parts[1:])
            errors = (connect + read + write, timeout)
        elif parts[0] == "T" and len(parts) == 3:
            total = int(parts[2])
    for count, kind in ((errors[0], "conn_error"), (errors[1], "timeout")):
        columns["t"] += [end - 0.5] * count
        columns["version"] += [UNKNOWN] * count
        columns["status"] += [0] * count
        columns["latency_ms"] += [math.nan] * count
        columns["error"] += [kind] * count
    # Sort by completion second so frames read like the asyncio engine's.
    order = sorted(range(len(columns["t"])), key=columns["t"].__getitem__)
    columns = {k: [v[i] for i in order] for k, v in columns.items()}
    return columns, latency, total


def run_wrk(settings: ProbeSettings, threads: int | None = None) -> WrkResult:
    """Run wrk with ``settings`` (connections, duration, headers, classify header)."""
    if settings.rate is not None:
        raise ValueError("the wrk engine sends as fast as it can; drop --rate or use asyncio")
    if settings.body_regex is not None:
        raise ValueError("the wrk engine classifies by header only; drop --body-regex")
    binary = wrk_binary()
    threads = threads or max(1, min(2, settings.connections))
    with tempfile.TemporaryDirectory(prefix="canarylab-wrk-") as tmp:
        script = Path(tmp) / "classify.lua"
        script.write_text(LUA)
        argv = [
            binary,
            f"-t{threads}",
            f"-c{max(settings.connections, threads)}",
            f"-d{max(1, round(settings.duration))}s",
            f"--timeout={max(1, round(settings.timeout))}s",
            "-s",
            str(script),
        ]
        for name, value in settings.headers:
            argv += ["-H", f"{name}: {value}"]
        argv.append(settings.url)
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={"CANARYLAB_CLASSIFY_HEADER": settings.classify_header, "PATH": "/usr/bin:/bin"},
            timeout=settings.duration + 60,
            check=False,
        )
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    columns, latency, _ = parse_output(done.stdout, end=time.time())
    return WrkResult(requests_frame(columns), elapsed, latency_ms=latency)
