"""``evidence: metrics`` end to end: wrk's traffic judged from the sandbox's Prometheus.

The sandbox's gateway (HAProxy) serves the parent and the canary; wrk, not the probe,
sends the traffic; the runbook runs with ``evidence = "metrics"`` so no probe runs and the
gates judge the gateway's exporter series from the sandbox's Prometheus. A healthy canary
is promoted; one with 20% errors, and one that hangs (HAProxy's 504s), are rolled back
with the PromQL and its numbers in the failure message.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canarylab.dataplane.routes import sandbox_host
from canarylab.record.events import ExitCode, Kind, Outcome, Reason
from tests.integration.rollout_kit import PARENT, deploy_parent
from tests.integration.test_verdicts import (
    assert_exit_code,
    assert_rolled_back,
    last_run_event,
    parent_template,
    run_cli,
    runbook_parameters,
)

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("wrk")),
        reason="needs prometheus and wrk (make system-deps)",
    ),
]

GATES = {
    "traffic_share": {"tolerance": 0.5},
    "metric_comparison": {"template": "haproxy/request-success-rate", "min_requests": 100},
}


@pytest.fixture
def wrk(sandbox: Any, namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    """wrk through the sandbox gateway at the parent's route for the whole test."""
    assert sandbox.status().get("prometheus"), "the sandbox runs no Prometheus"
    proc = subprocess.Popen(
        [
            "wrk",
            "-t1",
            "-c8",
            "-d600s",
            "--timeout",
            "2s",
            "-H",
            f"Host: {sandbox_host(PARENT, namespace)}",
            str(sandbox.status()["gateway"]).rstrip("/") + "/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    proc.terminate()
    proc.wait(15)


def metrics_run(sandbox: Any, namespace: str, out: Path, **extra: Any) -> dict[str, Any]:
    params = runbook_parameters(sandbox, namespace, out, **extra)
    params.update(evidence="metrics", gates=GATES)
    for probe_only in ("probe_target", "probe_headers", "probe_rate"):
        params.pop(probe_only)
    return params


def test_a_healthy_canary_judged_by_metrics_is_promoted(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path, wrk: Any
) -> None:
    deploy_parent(api_client, namespace)
    before = parent_template(api_client, namespace)
    run = run_cli(metrics_run(sandbox, namespace, tmp_path, steps=[25, 100], hold=10), tmp_path)
    r = run.record
    assert last_run_event(r)["outcome"] == Outcome.SUCCEEDED, run.describe()
    assert r.events_of(Kind.PROBE).empty  # no probe ran
    metrics = r.events_of(Kind.METRICS)
    assert len(metrics), run.describe()
    assert parent_template(api_client, namespace) != before
    assert_exit_code(run, ExitCode.OK)


@pytest.mark.parametrize(
    "env",
    [{"DEMO_ERROR_RATE": "0.2"}, {"DEMO_LATENCY_MS": "30000"}],
    ids=["error-rate-0.2", "hanging"],
)
def test_a_bad_canary_judged_by_metrics_is_rolled_back_with_its_promql(
    controller: Any,
    sandbox: Any,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    wrk: Any,
    env: dict[str, str],
) -> None:
    deploy_parent(api_client, namespace)
    before = parent_template(api_client, namespace)
    run = run_cli(metrics_run(sandbox, namespace, tmp_path, canary_env=env), tmp_path)
    last = assert_rolled_back(
        api_client,
        sandbox,
        namespace,
        run,
        before,
        (Reason.GATE_FAILED, Reason.NO_CANARY_TRAFFIC),
    )
    print(f"{env}: {last['message']}")
    if last["reason"] == Reason.GATE_FAILED:
        assert "haproxy_server_" in last["message"], run.describe()
        assert "canary_failures=" in last["message"], run.describe()
    assert_exit_code(run, ExitCode.ROLLED_BACK)
