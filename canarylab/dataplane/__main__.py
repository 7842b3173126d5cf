"""``python -m canarylab.dataplane``: the sandbox's data-plane process (see ``plane``).

The sandbox starts it with every path spelled out; it is not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from canarylab.dataplane.plane import PlaneSettings, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m canarylab.dataplane")
    parser.add_argument("--server", required=True, help="API server URL")
    parser.add_argument("--ca-file", type=Path, required=True)
    parser.add_argument("--cert-file", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--admin-socket", type=Path, required=True)
    parser.add_argument("--master-socket", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run(PlaneSettings(**vars(args))))


if __name__ == "__main__":
    main()
