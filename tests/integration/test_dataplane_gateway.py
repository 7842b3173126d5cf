"""The data plane's parts on their own, with real processes and no sandbox: the demo app
and a real HAProxy driven by ``GatewayApplier``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from canarylab.dataplane.haproxy import GatewayPlan, plan, render
from canarylab.dataplane.routes import RequestMatch, RouteRule, WeightedService
from canarylab.dataplane.runtime import GatewayApplier, socket_command
from canarylab.probe import Probe, ProbeSettings
from canarylab.sandbox.gateway import haproxy_binary
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(port: int, tag: str = "v1", **env: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    return subprocess.Popen(
        [sys.executable, "-m", "canarylab.dataplane.demoapp", "--port", str(port), "--tag", tag],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_ready(port: int) -> None:
    import urllib.request

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(ready, 20, what=f"demo app on {port}")


@pytest.fixture
def demo_apps() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        proc.wait(10)


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async def go() -> tuple[int, dict[str, str], str]:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            return r.status, dict(r.headers), await r.text()

    return asyncio.run(go())


# -------------------------------------------------------------- demo app
def test_demo_app_names_message_and_version(demo_apps):
    port = free_port()
    demo_apps.append(start_demo(port, "v7", DEMO_MESSAGE="hello Hongbo"))
    wait_ready(port)
    status, headers, body = fetch(f"http://127.0.0.1:{port}/any/path")
    assert (status, body) == (200, "hello Hongbo (version v7)\n")
    assert headers["X-Canarylab-Version"] == "v7"
    other = free_port()
    demo_apps.append(start_demo(other, "v7", DEMO_VERSION="v8"))
    wait_ready(other)
    assert fetch(f"http://127.0.0.1:{other}/")[2] == "hello world (version v8)\n"


def test_bad_canary_errors_are_counted_as_http_errors(demo_apps):
    port = free_port()
    demo_apps.append(start_demo(port, "v2", DEMO_ERROR_RATE="0.5", DEMO_LATENCY_MS="5"))
    wait_ready(port)
    result = asyncio.run(
        Probe(ProbeSettings(url=f"http://127.0.0.1:{port}/", max_requests=400, connections=8)).run()
    )
    summary = result.summary()
    assert summary["total"] == 400
    assert 120 <= summary["failed"]["http_errors"] <= 280
    assert summary["by_version"] == {"v2": 400}  # errors still say who answered
    assert summary["latency_ms"]["v2"]["p50_ms"] >= 5


def test_bad_setting_stops_the_app_with_a_clear_message():
    proc = start_demo(free_port(), DEMO_ERROR_RATE="lots")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert b"DEMO_ERROR_RATE='lots' is not a number" in out


def test_sigterm_finishes_in_flight_requests(demo_apps):
    port = free_port()
    proc = start_demo(port, DEMO_LATENCY_MS="1000")
    demo_apps.append(proc)
    wait_ready(port)

    async def scenario() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.get(f"http://127.0.0.1:{port}/") as r:
                    await r.read()
                    return r.status

            requests = [asyncio.create_task(one()) for _ in range(5)]
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*requests)

    assert asyncio.run(scenario()) == [200] * 5
    assert proc.wait(10) == 0


# ---------------------------------------------------------------- HAProxy
RULE = RouteRule(
    kind="ApisixRoute",
    namespace="demo",
    route="web",
    rule="main",
    priority=0,
    hosts=("web.demo.sandbox",),
    matches=(RequestMatch(),),
    services=(WeightedService("demo", "web", 80), WeightedService("demo", "web-canary", 20)),
)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[GatewayApplier]:
    port = free_port()
    applier = GatewayApplier(
        tmp_path / "haproxy.cfg", tmp_path / "admin.sock", tmp_path / "master.sock", port
    )
    applier.config_path.write_text(render(GatewayPlan(()), port, applier.admin_socket))
    proc = subprocess.Popen(
        [
            haproxy_binary(),
            "-W",
            "-db",
            "-f",
            str(applier.config_path),
            "-S",
            str(applier.master_socket),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: applier.admin_socket.exists(), 10, what="HAProxy admin socket")
    yield applier
    proc.terminate()
    proc.wait(10)


def shares_through(applier: GatewayApplier, requests: int = 1000) -> dict[str, float]:
    settings = ProbeSettings(
        url=f"http://127.0.0.1:{applier.port}/",
        headers=(("Host", "web.demo.sandbox"),),
        max_requests=requests,
        connections=10,
    )
    result = asyncio.run(Probe(settings).run())
    assert result.failed == 0, result.summary()
    return result.shares()


def weights_in_haproxy(applier: GatewayApplier) -> dict[str, int]:
    state = asyncio.run(socket_command(applier.admin_socket, "show servers state"))
    out = {}
    for line in state.splitlines()[2:]:
        fields = line.split()
        if len(fields) > 7:
            out[fields[3]] = int(fields[7])  # srv_name, srv_uweight
    return out


def test_weight_and_server_changes_go_through_the_runtime_api(haproxy, demo_apps):
    ports = [free_port() for _ in range(3)]
    for port, tag in zip(ports, ("v1", "v2", "v1"), strict=True):
        demo_apps.append(start_demo(port, tag))
        wait_ready(port)
    stable, canary, extra = (("127.0.0.1", p) for p in ports)

    asyncio.run(
        haproxy.apply(plan([RULE], {("demo", "web"): [stable], ("demo", "web-canary"): [canary]}))
    )
    assert haproxy.reloads == 1
    assert shares_through(haproxy)["v2"] == pytest.approx(0.2, abs=0.01)

    # Weights only: runtime API, no reload.
    heavier = RouteRule(
        **{
            **RULE.__dict__,
            "services": (
                WeightedService("demo", "web", 50),
                WeightedService("demo", "web-canary", 50),
            ),
        }
    )
    asyncio.run(
        haproxy.apply(
            plan([heavier], {("demo", "web"): [stable], ("demo", "web-canary"): [canary]})
        )
    )
    assert haproxy.reloads == 1
    assert weights_in_haproxy(haproxy) == {
        f"demo.web.{ports[0]}": 256,
        f"demo.web-canary.{ports[1]}": 256,
    }
    assert shares_through(haproxy)["v2"] == pytest.approx(0.5, abs=0.01)

    # A process added, then the first removed: add server / maint + del server.
    asyncio.run(
        haproxy.apply(
            plan([heavier], {("demo", "web"): [stable, extra], ("demo", "web-canary"): [canary]})
        )
    )
    assert weights_in_haproxy(haproxy)[f"demo.web.{ports[2]}"] == 128
    asyncio.run(
        haproxy.apply(plan([heavier], {("demo", "web"): [extra], ("demo", "web-canary"): [canary]}))
    )
    assert haproxy.drained(stable)
    assert not haproxy.drained(extra)

    def deleted() -> bool:
        asyncio.run(
            haproxy.apply(
                plan([heavier], {("demo", "web"): [extra], ("demo", "web-canary"): [canary]})
            )
        )
        return f"demo.web.{ports[0]}" not in weights_in_haproxy(haproxy)

    wait_for(deleted, 20, interval=0.5, what="the removed server deleted")
    assert haproxy.reloads == 1
    assert shares_through(haproxy)["v2"] == pytest.approx(0.5, abs=0.01)

    # A new rule is a new structure: one reload, and traffic still flows.
    header = RouteRule(
        **{
            **RULE.__dict__,
            "rule": "hdr",
            "priority": 1,
            "services": (WeightedService("demo", "web-canary", 1),),
        }
    )
    asyncio.run(
        haproxy.apply(
            plan([heavier, header], {("demo", "web"): [extra], ("demo", "web-canary"): [canary]})
        )
    )
    assert haproxy.reloads == 2
    assert shares_through(haproxy, 200) == {"v2": 1.0}
