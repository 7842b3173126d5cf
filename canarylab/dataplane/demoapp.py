"""The demo app: a tiny HTTP service whose responses say which version answered.

Every response (except the readiness endpoint) carries the body
``<message> (version <version>)`` and the header ``X-Canarylab-Version``, so a probe
can tell the original from the canary. Its behaviour comes from environment
variables, the way a pod template would set it:

- ``DEMO_MESSAGE``    body text (default ``hello world``)
- ``DEMO_VERSION``    version; when unset, the image tag the workload runner passes
- ``DEMO_ERROR_RATE`` share of requests answered with 500 (0..1), for a "bad canary"
- ``DEMO_LATENCY_MS`` latency added to every request
- ``DEMO_START_DELAY_MS`` time before the app listens at all (a slow-starting app:
  its Pod stays not Ready until then)

``GET /readyz`` answers 200 while the app accepts traffic and 503 once it is shutting
down. SIGTERM stops accepting new connections and lets in-flight requests finish.

This module must never import Kubernetes or anything outside the standard library and
aiohttp: it runs as many small processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

IMAGE_PREFIX = "canarylab/demo:"
"""Deployments whose container image starts with this run as demo-app processes."""
VERSION_HEADER = "X-Canarylab-Version"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class DemoSettings:
    """What one demo-app process answers."""

    message: str = "hello world"
    """Body text, e.g. ``hello world`` for the original and ``hello Hongbo`` for a canary."""
    version: str = "v1"
    """Value of the ``X-Canarylab-Version`` header."""
    error_rate: float = 0.0
    """Share of requests answered with HTTP 500."""
    latency_ms: float = 0.0
    """Latency added before every answer."""
    start_delay_ms: float = 0.0
    """Time before the app opens its port (and so before ``/readyz`` answers)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], image_tag: str | None = None) -> DemoSettings:
        """Read ``DEMO_*`` variables; a bad value is an error naming the variable."""

        def number(name: str, low: float, high: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return 0.0
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if not low <= value <= high:
                raise ValueError(f"{name}={raw!r} must be between {low:g} and {high:g}")
            return value

        return cls(
            message=env.get("DEMO_MESSAGE") or "hello world",
            version=env.get("DEMO_VERSION") or image_tag or "v1",
            error_rate=number("DEMO_ERROR_RATE", 0.0, 1.0),
            latency_ms=number("DEMO_LATENCY_MS", 0.0, 600_000.0),
            start_delay_ms=number("DEMO_START_DELAY_MS", 0.0, 600_000.0),
        )


def image_tag(image: str) -> str | None:
    """The tag of a demo-app image (``canarylab/demo:v2`` → ``v2``), else None."""
    if not image.startswith(IMAGE_PREFIX):
        return None
    return image[len(IMAGE_PREFIX) :] or None


def build_app(settings: DemoSettings, ready_flag: dict[str, bool] | None = None) -> web.Application:
    """The aiohttp application; ``/readyz`` answers 503 once ``ready_flag["ready"]`` is
    False (the app is shutting down)."""
    app = web.Application()
    flag = ready_flag if ready_flag is not None else {"ready": True}
    body = f"{settings.message} (version {settings.version})\n".encode()
    headers = {VERSION_HEADER: settings.version, "Content-Type": "text/plain"}

    async def ready(request: web.Request) -> web.Response:
        status = 200 if flag["ready"] else 503
        return web.Response(status=status, text="ready\n" if status == 200 else "stopping\n")

    async def answer(request: web.Request) -> web.Response:
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        if settings.error_rate and random.random() < settings.error_rate:
            return web.Response(status=500, body=b"injected error\n", headers=headers)
        return web.Response(body=body, headers=headers)

    app.router.add_get(READY_PATH, ready)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def serve(settings: DemoSettings, host: str, port: int, grace: float = 10.0) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests (up to ``grace`` s)."""
    if settings.start_delay_ms:
        await asyncio.sleep(settings.start_delay_ms / 1000)
    flag = {"ready": True}
    app = build_app(settings, flag)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    flag["ready"] = False
    # cleanup() closes the listener, then waits for running handlers to finish.
    await runner.cleanup()


def main(host: str = "127.0.0.1", port: int = 8080, tag: str | None = None) -> None:
    """Run one demo-app process with settings from the environment."""
    settings = DemoSettings.from_env(os.environ, image_tag=tag)
    asyncio.run(serve(settings, host, port))


if __name__ == "__main__":  # how the workload runner starts one process
    import argparse

    parser = argparse.ArgumentParser(description="canarylab demo app (one process)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tag", default=None, help="image tag: the version when unset")
    args = parser.parse_args()
    main(args.host, args.port, args.tag)
