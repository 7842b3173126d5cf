"""Sandbox start-up and footprint: ``python benchmarks/sandbox.py [--runs N]``.

Prints the warm ``sandbox up`` time (median and max over N runs, binaries cached,
state directory reused as a user's would be) and the resident memory of the running
sandbox's processes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from canarylab.sandbox import Sandbox, build


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    t0 = time.monotonic()
    build.ensure_built()
    print(f"binaries ready (cached) in {time.monotonic() - t0:.2f}s")
    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(Path(tmp) / "sb")
        sb.up()  # first start in a new directory also writes the PKI
        sb.down()
        times = []
        for _ in range(args.runs):
            start = time.monotonic()
            sb.up()
            times.append(time.monotonic() - start)
            memory = {p.name: rss_mib(p.pid) for p in sb.state().processes}
            sb.down()
    print(
        f"warm sandbox up: median {statistics.median(times):.2f}s, max {max(times):.2f}s over {len(times)} runs"
    )
    for name, mib in memory.items():
        print(f"  {name:<26} {mib:7.1f} MiB RSS")
    print(f"  {'total':<26} {sum(memory.values()):7.1f} MiB RSS (idle, after start-up)")


if __name__ == "__main__":
    main()
