"""Metric gates against the real thing: HAProxy's exporter, a real Prometheus, wrk traffic.

No probe runs: wrk sends the traffic through HAProxy (original v1 and canary v2 demo-app
processes, 80/20), the sandbox's Prometheus component scrapes HAProxy's built-in exporter
every second, and the built-in HAProxy templates are range-queried exactly as a runbook
with ``evidence: metrics`` does. The Kubernetes side is a fake here (the control plane is
not what these tests prove); the runner is the real one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canarylab import gates as g
from canarylab.dataplane.haproxy import plan, render
from canarylab.dataplane.routes import RequestMatch, RouteRule, WeightedService
from canarylab.record.events import Reason
from canarylab.rollout import Canary, Plan, Step, run_plan
from canarylab.rollout.prometheus import MetricsFeed, PrometheusClient, templates_for
from canarylab.rollout.runner import RolloutStopped
from canarylab.sandbox import procs, prometheus
from tests.helpers import wait_for
from tests.integration.test_dataplane_gateway import free_port, start_demo, wait_ready
from tests.unit.test_rollout_plan import FakeRollout

pytestmark = pytest.mark.skipif(
    not (prometheus.binary() and shutil.which("haproxy") and shutil.which("wrk")),
    reason="needs prometheus, haproxy and wrk (make system-deps)",
)

HOST = "web.demo.sandbox"
RULE = RouteRule(
    kind="ApisixRoute",
    namespace="demo",
    route="web",
    rule="main",
    priority=0,
    hosts=(HOST,),
    matches=(RequestMatch(path_prefixes=("/",)),),
    services=(WeightedService("demo", "web", 80), WeightedService("demo", "web-canary", 20)),
)


class Bench:
    """Two demo apps behind HAProxy with its exporter, Prometheus scraping it, wrk running."""

    def __init__(self, tmp: Path, canary_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.records: list[procs.ProcessRecord] = []
        original, canary = free_port(), free_port()
        self.procs.append(start_demo(original, "v1"))
        self.procs.append(start_demo(canary, "v2", **canary_env))
        wait_ready(original)
        wait_ready(canary)
        self.port, self.metrics_port, self.prom_port = free_port(), free_port(), free_port()
        gateway = plan(
            [RULE],
            {
                ("demo", "web"): [("127.0.0.1", original)],
                ("demo", "web-canary"): [("127.0.0.1", canary)],
            },
        )
        config = tmp / "haproxy.cfg"
        config.write_text(
            render(gateway, self.port, tmp / "admin.sock", metrics_port=self.metrics_port)
        )
        self.procs.append(
            subprocess.Popen(
                [shutil.which("haproxy") or "haproxy", "-db", "-f", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        record = prometheus.start(
            tmp, tmp / "logs", self.prom_port, self.metrics_port, free_port(), print
        )
        assert record is not None
        self.prometheus = record
        self.procs.append(
            subprocess.Popen(
                [
                    "wrk",
                    "-t1",
                    "-c8",
                    "-d300s",
                    "--timeout",
                    "2s",
                    "-H",
                    f"Host: {HOST}",
                    f"http://127.0.0.1:{self.port}/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.client = PrometheusClient(f"http://127.0.0.1:{self.prom_port}")

    def feed(self, gates: list[g.Gate], **kw: Any) -> MetricsFeed:
        return MetricsFeed(self.client, templates_for(gates), "demo", "web", "v2", "v1", **kw)

    def close(self) -> None:
        procs.stop(self.prometheus)
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            proc.wait(15)
        self.client.close()


@pytest.fixture
def bench(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bench]:
    b = Bench(tmp_path, dict(getattr(request, "param", {})))
    yield b
    b.close()


def judge_until_decided(
    feed: MetricsFeed, gate: g.Gate, timeout: float = 180
) -> tuple[g.Verdict, float]:
    t0 = time.monotonic()
    window = g.Window(canary="v2", original="v1")
    while True:
        verdict = gate.judge(feed.traffic(), window)
        if verdict.outcome != "insufficient" or time.monotonic() - t0 > timeout:
            return verdict, time.monotonic() - t0
        time.sleep(1)


def test_the_builtin_haproxy_templates_find_the_exporters_series(bench: Bench) -> None:
    gates = g.from_spec(
        {"traffic_share": False, "metric_comparison": True, "metric_threshold": True}
    )
    feed = bench.feed(gates)
    wait_for(
        lambda: all(e.error is None for e in feed.evidence().values()),
        60,
        interval=1,
        what="every built-in HAProxy query to return series",
    )

    # series appear with the first scrape, counts a scrape or two later: wait for traffic
    def counted() -> float:
        samples = feed.traffic().samples
        return float(samples["requests"].sum()) if "requests" in samples else 0.0

    wait_for(
        lambda: counted() >= 200,
        60,
        interval=1,
        what="Prometheus to count 200 requests",
    )
    evidence = feed.evidence()
    counts = evidence["haproxy/request-success-rate"].queries
    servers = {key: [*counts[key].series] for key in counts}
    assert all("web-canary" in s for s in servers["canary.requests"]), servers
    assert not any("web-canary" in s for s in servers["original.requests"]), servers
    seen = feed.traffic()
    share = seen.samples.groupby("version")["requests"].sum()
    print(f"requests by version from Prometheus: {share.to_dict()}")
    assert share["v2"] / share.sum() == pytest.approx(0.2, abs=0.1)  # weights 80/20, round robin


@pytest.mark.parametrize(
    ("bench", "expected"),
    [
        ({}, "pass"),
        ({"DEMO_ERROR_RATE": "0.2"}, "fail"),
        ({"DEMO_LATENCY_MS": "30000"}, "fail"),  # a hanging canary: HAProxy's 504s
    ],
    indirect=["bench"],
    ids=["healthy", "error-rate-0.2", "hanging"],
)
def test_the_comparison_judges_wrk_traffic_from_prometheus(bench: Bench, expected: str) -> None:
    gate = g.from_spec({"traffic_share": False, "metric_comparison": {"min_requests": 200}})[0]
    verdict, took = judge_until_decided(bench.feed([gate]), gate)
    print(f"{expected}: {took:.0f}s: {verdict}")
    assert verdict.outcome == expected, verdict
    if expected == "fail":
        assert "haproxy_server_" in verdict.reason
        assert "PromQL" in verdict.reason
        assert int(verdict.numbers["canary_failures"] or 0) > 0  # type: ignore[arg-type]


def test_prometheus_killed_mid_step_fails_the_step_closed(bench: Bench) -> None:
    gates = g.from_spec({"traffic_share": False, "metric_comparison": {"min_requests": 10**6}})
    rollout = FakeRollout()
    feed = bench.feed(
        list(gates), record=lambda kind, fields: rollout.recorder.event(kind, **fields)
    )
    wait_for(lambda: not feed.traffic().samples.empty, 60, interval=1, what="counts in Prometheus")

    def kill_after_first_look(step: int, verdicts: list[g.Verdict]) -> None:
        if bench.prometheus.alive():
            procs.stop(bench.prometheus, grace=0)

    steps = (Step(weight=20, hold_s=3, max_hold_s=10, gates=tuple(gates)),)
    with pytest.raises(RolloutStopped) as stopped:
        run_plan(
            rollout,  # type: ignore[arg-type]
            Plan(steps=steps, promote=True, check_every_s=1),
            Canary(version="v2"),
            feed,
            original_version="v1",
            on_look=kill_after_first_look,
        )
    err = stopped.value
    print(err)
    assert err.reason == Reason.INSUFFICIENT_EVIDENCE
    assert err.rolled_back
    assert "abort" in rollout.calls
    assert "replace" not in rollout.calls
    assert "unreachable" in str(err)
    recorded = [e for e in rollout.recorder.events if e["kind"] == "metrics"]
    assert recorded
    assert any(x["series"] for e in recorded for x in e["evidence"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q", "-s"]))
