"""The canary-rollout runbook, executed by papermill against the sandbox and controller.

Good canary: completes with zero failed requests; bad canary (20% errors) through
``canarylab run``: the first gate with enough traffic fails, the rollback completes, the
command exits 2; SIGTERM to ``canarylab run`` mid-step: rolled back, exit 2; a killed
kernel: the re-run with the same parameters finishes without duplicating anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import papermill as pm
import pytest

from canarylab import record
from canarylab.dataplane.routes import sandbox_host
from canarylab.record.events import ExitCode, Kind, Outcome, Reason, RunState
from tests.helpers import wait_for
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    exists,
    parent_image,
    route_is_all_parent,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "runbooks" / "canary-rollout.ipynb"


def parameters(sandbox: Any, namespace: str, out: Path, **extra: Any) -> dict[str, Any]:
    gateway = str(sandbox.status()["gateway"]).rstrip("/") + "/"
    return {
        "namespace": namespace,
        "parent": PARENT,
        "image": "canarylab/demo:v2",
        "version": "v2",
        "replicas": 2,
        "steps": [20, 60, 100],
        "hold": 4,
        "gates": {
            "max_error_rate": {"limit": 0.05, "min_requests": 40},
            "error_rate_comparison": {"alpha": 0.01, "min_requests": 60},
            "latency_comparison": {"alpha": 0.001, "max_ratio": 3.0, "min_requests": 60},
        },
        "probe_target": gateway,
        "probe_headers": {"Host": sandbox_host(PARENT, namespace)},
        "probe_rate": 250,
        "kubeconfig": str(sandbox.kubeconfig),
        "output_dir": str(out),
        **extra,
    }


def execute(params: dict[str, Any], out: Path) -> Any:
    return pm.execute_notebook(
        str(RUNBOOK),
        str(out / "canary-rollout.ipynb"),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(REPO),
    )


def test_good_runbook_completes_with_zero_failed_requests(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    execute(parameters(sandbox, namespace, tmp_path), tmp_path)
    assert parent_image(api_client, namespace) == "canarylab/demo:v2"
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    r = record.load(tmp_path / "record")
    assert r.metadata["outcome"] == "succeeded"
    assert r.totals["failed"] == 0
    assert r.totals["requests"] > 1000
    assert set(r.samples["version"]) >= {"v1", "v2"}
    summary = json.loads((tmp_path / "totals.json").read_text())
    assert summary == r.totals
    steps = r.events_of("step")
    assert list(steps[steps["state"] == "passed"]["weight"]) == [20, 60, 100]
    # the executed notebook ends with the totals line
    nb = json.loads((tmp_path / "canary-rollout.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert f"requests: {r.totals['requests']}, failed: 0" in text


def canarylab_run(params: dict[str, Any], out: Path) -> subprocess.Popen[str]:
    """``canarylab run canary-rollout`` with ``params``, as a user starts it."""
    exe = Path(sys.executable).parent / "canarylab"
    args = [str(exe), "run", "canary-rollout", "-o", str(out / "canary-rollout.ipynb"), "--quiet"]
    for name, value in params.items():
        args += ["-p", name, json.dumps(value)]  # JSON is YAML
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_bad_runbook_fails_at_the_first_gate_after_rolling_back(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    params = parameters(sandbox, namespace, tmp_path, canary_env={"DEMO_ERROR_RATE": "0.2"}, hold=8)
    proc = canarylab_run(params, tmp_path)
    _, message = proc.communicate(timeout=600)
    assert "runbook failed: GateFailed" in message
    assert "p-value" in message
    assert "rolled back" in message
    # the rollback finished before papermill raised
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    assert parent_image(api_client, namespace) == "canarylab/demo:v1"
    r = record.load(tmp_path / "record")
    assert r.metadata["outcome"] == Outcome.ROLLED_BACK
    assert r.metadata["exit_code"] == ExitCode.ROLLED_BACK
    verdicts = r.events_of(Kind.VERDICT)
    failed = verdicts[verdicts["outcome"] == "fail"]
    assert len(failed) >= 1
    first = failed.iloc[0]
    assert first["gate"] in ("max-error-rate", "error-rate-comparison")
    # no error-rate gate had passed before: it failed as soon as it had enough traffic
    earlier = verdicts[(verdicts["t"] < first["t"]) & verdicts["gate"].str.contains("error-rate")]
    assert "pass" not in set(earlier["outcome"])
    # the executed notebook shows the gate and its numbers
    nb = (tmp_path / "canary-rollout.ipynb").read_text()
    assert first["gate"] in nb
    assert "canary_error_rate" in nb
    assert proc.returncode == ExitCode.ROLLED_BACK, message  # not promoted, safe


def test_sigterm_to_canarylab_run_rolls_back_then_exits_2(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """The signal reaches the kernel as an interrupt: weight 0 and delete, then exit 2."""
    deploy_parent(api_client, namespace)
    params = parameters(sandbox, namespace, tmp_path, hold=300)
    proc = canarylab_run(params, tmp_path)
    try:
        events = tmp_path / "record" / "events.jsonl"

        def first_step_started() -> bool:
            return events.exists() and any(
                '"kind": "step"' in line and '"state": "started"' in line
                for line in events.read_text().splitlines()
            )

        wait_for(first_step_started, timeout=180, interval=0.3, what="step 1 to start")
        assert exists(api_client, namespace)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupting the kernel" in err
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    assert parent_image(api_client, namespace) == "canarylab/demo:v1"
    r = record.load(tmp_path / "record")
    runs = r.rows_of(Kind.RUN)
    assert runs[-1]["state"] == RunState.FINISHED
    assert runs[-1]["reason"] == Reason.INTERRUPTED
    assert runs[-1]["outcome"] == Outcome.ROLLED_BACK
    assert r.metadata["reason"] == Reason.INTERRUPTED
    assert proc.returncode == ExitCode.ROLLED_BACK, err


def test_killed_kernel_rerun_finishes_without_duplicates(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    params = parameters(sandbox, namespace, tmp_path, steps=[20, 50, 100], hold=6)
    args = [
        sys.executable,
        "-m",
        "papermill",
        str(RUNBOOK),
        str(tmp_path / "first.ipynb"),
        "-k",
        "python3",
    ]
    args += ["-y", json.dumps(params)]
    first = subprocess.Popen(args, cwd=REPO, start_new_session=True)
    try:
        events = tmp_path / "record" / "events.jsonl"

        def second_step_started() -> bool:
            return events.exists() and any(
                json.loads(line).get("kind") == "step"
                and json.loads(line).get("state") == "started"
                and json.loads(line).get("weight") == 50
                for line in events.read_text().splitlines()
                if line.strip().endswith("}")
            )

        wait_for(second_step_started, timeout=120, interval=0.3, what="step 2 to start")
        kernel = _kernel_of(first.pid)
        os.kill(kernel, signal.SIGKILL)
        first.wait(60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode != 0
    assert exists(api_client, namespace)  # interrupted mid-rollout, canary still there
    time.sleep(1)
    execute(params, tmp_path)  # same parameters, same output directory
    assert parent_image(api_client, namespace) == "canarylab/demo:v2"
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    r = record.load(tmp_path / "record")
    assert len(r.metadata["runs"]) == 2
    actions = r.events_of("action")
    created = actions[(actions["what"] == "create_canary") & (actions["result"] == "created")]
    assert len(created) == 1
    runs = r.events_of("run")
    assert list(runs[runs["state"].isin(["started", "resumed"])]["state"]) == ["started", "resumed"]
    resumed = runs[runs["state"] == "resumed"].iloc[0]
    assert resumed["first_step"] == 1  # the interrupted step 2 is held again, step 1 is not
    passed = r.events_of("step")
    assert list(passed[passed["state"] == "passed"]["weight"]) == [20, 50, 100]
    assert r.metadata["outcome"] == "succeeded"


def _kernel_of(pid: int) -> int:
    """The ipykernel process papermill ``pid`` started."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        child, parent, cmd = line.split(None, 2)
        if int(parent) == pid and "ipykernel" in cmd:
            return int(child)
    raise AssertionError(f"no kernel process under papermill pid {pid}")
