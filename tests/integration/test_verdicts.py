"""Issue 10's acceptance: canaries that must never be promoted, through the real runbook.

Every test runs ``canarylab run canary-rollout`` as a user would (a subprocess, the
runbook's DEFAULT gates, the probe on the sandbox gateway, real demo-app processes
behind it) and then checks the cluster, the gateway and the record:

- a canary that answers nothing within the probe's timeout (it sleeps 30 s a request);
- a canary whose processes never serve (each one exits at start: a crash loop, while
  kwok reports the pods ready);
- a canary whose route share is 0 while its applied weight is 25 (its answers say
  ``v1``, so none of the traffic is the canary's);

each exits 2, the parent Deployment keeps its template, the canary was put back to
weight 0 and deleted, the route and the gateway send everything to the parent, and the
record's last ``run`` event names why (``GateFailed``, ``NoCanaryTraffic``, …) with the
outcome ``rolled-back``. A runbook whose probe target is wrong (nothing listens) fails
before any step with a reason naming the probe, and never creates nor promotes a canary.

Every wait is on a condition (the subprocess ending, the gateway converging); the only
clock is the upper bound of each wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kubernetes import client

from canarylab import record
from canarylab.dataplane.routes import sandbox_host
from canarylab.probe import Probe, ProbeSettings
from canarylab.record.events import ExitCode, Kind, Outcome, Reason, RunState, StepState
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    route_backends,
    route_is_all_parent,
)
from tests.integration.test_dataplane_helpers import wait_backend

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CANARYLAB = Path(sys.executable).parent / "canarylab"
PARENT_REPLICAS = 2
RUN_TIMEOUT_S = 540.0
"""Upper bound of one ``canarylab run`` (pytest's own per-test timeout is 600 s)."""
CANARY_MESSAGE = "hello canary"
"""The canary's body text: the final HTTP check tells it from the parent's "hello world"."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runbook_parameters(sandbox: Any, namespace: str, out: Path, **extra: Any) -> dict[str, Any]:
    """The runbook's parameters: never ``gates`` (the defaults are under test)."""
    gateway = str(sandbox.status()["gateway"]).rstrip("/") + "/"
    params = {
        "namespace": namespace,
        "parent": PARENT,
        "image": "canarylab/demo:v2",
        "version": "v2",
        "replicas": 2,
        "steps": [25, 100],
        "hold": 5,
        "max_hold": 90,
        "probe_target": gateway,
        "probe_headers": {"Host": sandbox_host(PARENT, namespace)},
        "probe_rate": 200,
        "kubeconfig": str(sandbox.kubeconfig),
        "output_dir": str(out),
        **extra,
    }
    assert "gates" not in params
    return params


@dataclass
class Run:
    code: int
    output: str
    out: Path

    @property
    def record(self) -> record.Record:
        return record.load(self.out / "record")

    def describe(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        events = self.out / "record" / "events.jsonl"
        lines = events.read_text().splitlines()[-20:] if events.exists() else ["(no record)"]
        shown = [line if len(line) < 600 else line[:600] + " …" for line in lines]
        return f"exit {self.code}; output tail:\n{tail}\nrecord tail:\n" + "\n".join(shown)


def run_cli(params: dict[str, Any], out: Path, timeout: float = RUN_TIMEOUT_S) -> Run:
    """``canarylab run canary-rollout -p …`` in its own session; killed (group) on timeout."""
    args = [str(CANARYLAB), "run", "canary-rollout"]
    for name, value in params.items():
        args += ["-p", name, json.dumps(value)]  # JSON is YAML: values arrive typed
    log = out / "canarylab-run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise AssertionError(
                f"canarylab run did not end within {timeout:.0f}s:\n"
                + Run(-9, log.read_text(errors="replace"), out).describe()
            ) from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return Run(code, log.read_text(errors="replace"), out)


def parent_template(api: Any, namespace: str) -> dict[str, Any]:
    dep = client.AppsV1Api(api).read_namespaced_deployment(PARENT, namespace)
    return dict(api.sanitize_for_serialization(dep.spec.template))


def last_run_event(r: record.Record) -> pd.Series:
    runs = r.events_of(Kind.RUN)
    assert len(runs), "the record has no run event"
    finished = runs[runs["state"] == RunState.FINISHED]
    assert len(finished), f"no finished run event; run events: {runs.to_dict('records')}"
    last = finished.iloc[-1]
    assert runs.index[-1] == finished.index[-1], "a run event follows the finished one"
    return last


def gateway_serves_only_the_parent(sandbox: Any, namespace: str) -> dict[str, Any]:
    """Real HTTP through the gateway, classified by body text: every answer is the parent's."""
    rule = f"ApisixRoute/{namespace}/{PARENT}/main"
    wait_backend(
        sandbox,
        rule,
        lambda b: sum(1 for s in b["servers"] if s["weight"] > 0) == PARENT_REPLICAS,
        timeout=90,
    )
    settings = ProbeSettings(
        url=str(sandbox.status()["gateway"]).rstrip("/") + "/",
        headers=(("Host", sandbox_host(PARENT, namespace)),),
        body_regex=r"^(hello \w+)",
        max_requests=200,
        connections=8,
        duration=120,
    )
    summary = dict(asyncio.run(Probe(settings).run()).summary())
    assert summary["by_version"] == {"hello world": 200}, summary
    return summary


def assert_rolled_back(
    api: Any,
    sandbox: Any,
    namespace: str,
    run: Run,
    template: dict[str, Any],
    reasons: Iterable[Reason],
) -> pd.Series:
    """The acceptance of a–c but the exit code; returns the last ``run`` event."""
    reasons = tuple(reasons)
    # the cluster: the parent untouched, no canary object, the route all-parent
    assert parent_template(api, namespace) == template
    assert canary_objects(api, namespace) == []
    assert route_is_all_parent(api, namespace), route_backends(api, namespace)
    # the record
    r = run.record
    assert r.metadata["outcome"] == Outcome.ROLLED_BACK, run.describe()
    last = last_run_event(r)
    assert last["outcome"] == Outcome.ROLLED_BACK, run.describe()
    assert last["reason"] in reasons, run.describe()
    assert int(last["exit_code"]) == ExitCode.ROLLED_BACK
    assert r.metadata["reason"] == last["reason"]
    assert r.metadata["exit_code"] == ExitCode.ROLLED_BACK
    if last["reason"] == Reason.CANARY_NOT_READY:
        # stopped before the first step: the canary never had weight
        assert not r.rows_of(Kind.STEP), run.describe()
        return last
    assert int(last["step"]) == 0, run.describe()  # stopped at the first step (25%)
    steps = r.events_of(Kind.STEP)
    assert StepState.PASSED not in set(steps["state"]), run.describe()
    failed = steps[steps["state"] == StepState.FAILED]
    assert list(failed["weight"]) == [25], run.describe()
    started = steps[steps["state"] == StepState.STARTED]
    assert list(started["weight"]) == [25]  # the canary did have weight 25
    # the controller applied 25% to the route, and later 0% (before the delete)
    status = r.events_of(Kind.STATUS)
    applied = list(status["applied_weight"])
    assert 25 in applied, applied
    assert 0 in applied[applied.index(25) :], applied
    actions = r.events_of(Kind.ACTION)
    assert "replace" not in set(actions["what"]), "a rolled-back run asked for a replace"
    zero = actions[(actions["what"] == "set_weight") & (actions["weight"] == 0)]
    assert len(zero) >= 1, "the rollback never set the weight to 0"
    aborts = actions[actions["what"] == "abort"]
    assert "rolled back" in set(aborts["result"]), aborts.to_dict("records")
    deleted = actions[(actions["what"] == "delete") & (actions["result"] == "deleted")]
    assert len(deleted) == 1
    # the gateway: real requests reach only the parent's processes
    gateway_serves_only_the_parent(sandbox, namespace)
    return last


def assert_exit_code(run: Run, code: ExitCode) -> None:
    """Checked last in each test, so that a wrong exit code is reported after all else."""
    assert run.code == code, run.describe()


@pytest.fixture
def parent(api_client: Any, namespace: str) -> dict[str, Any]:
    """The sample app (v1, two replicas) deployed; its pod template before the run."""
    deploy_parent(api_client, namespace, replicas=PARENT_REPLICAS)
    return parent_template(api_client, namespace)


def test_a_canary_that_answers_nothing_in_time_exits_2(
    controller: Any,
    sandbox: Any,
    api_client: Any,
    namespace: str,
    parent: dict[str, Any],
    tmp_path: Path,
) -> None:
    # 30 s per request, six times the probe's timeout (ProbeSettings.timeout, 5 s):
    # /readyz still answers at once, so the processes are ready and take connections
    assert ProbeSettings(url="http://x/").timeout < 30
    env = {"DEMO_LATENCY_MS": "30000", "DEMO_MESSAGE": CANARY_MESSAGE}
    run = run_cli(runbook_parameters(sandbox, namespace, tmp_path, canary_env=env), tmp_path)
    last = assert_rolled_back(
        api_client,
        sandbox,
        namespace,
        run,
        parent,
        (Reason.GATE_FAILED, Reason.NO_CANARY_TRAFFIC),
    )
    r = run.record
    # the failures the canary caused were seen: timeouts without a version
    assert int(r.samples["timeouts"].sum()) > 0
    assert "v2" not in set(r.samples["version"])  # it never answered once
    verdicts = r.events_of(Kind.VERDICT)
    failed = verdicts[verdicts["outcome"] == "fail"]
    assert len(failed) >= 1, run.describe()
    if last["reason"] == Reason.GATE_FAILED:  # the unversioned timeouts became the canary's
        assert failed.iloc[0]["numbers"]["attributed_failures"] > 0, run.describe()
    print(f"hanging canary: {last['reason']}: {failed.iloc[0]['message']}")
    assert_exit_code(run, ExitCode.ROLLED_BACK)


@pytest.mark.parametrize(
    ("canary", "reasons"),
    [
        # a bad DEMO_ERROR_RATE makes every demo-app process exit at start: a crash loop.
        # Its pods are Ready only when their process serves, so they never are, and the
        # run stops before any traffic is sent to the canary.
        (
            {"canary_env": {"DEMO_ERROR_RATE": "never", "DEMO_MESSAGE": CANARY_MESSAGE}},
            (Reason.CANARY_NOT_READY,),
        ),
        # not a demo-app image: kwok reports its pods Ready on a timer but the sandbox
        # starts no process for them, so only the traffic can tell
        ({"image": "registry.example/app:v2"}, (Reason.NO_CANARY_TRAFFIC, Reason.GATE_FAILED)),
    ],
    ids=["crash-loop", "no-process"],
)
def test_a_canary_whose_processes_never_serve_exits_2(
    controller: Any,
    sandbox: Any,
    api_client: Any,
    namespace: str,
    parent: dict[str, Any],
    tmp_path: Path,
    canary: dict[str, Any],
    reasons: tuple[Reason, ...],
) -> None:
    run = run_cli(runbook_parameters(sandbox, namespace, tmp_path, **canary), tmp_path)
    last = assert_rolled_back(api_client, sandbox, namespace, run, parent, reasons)
    r = run.record
    assert "v2" not in set(r.samples["version"])
    if last["reason"] == Reason.CANARY_NOT_READY:
        # stopped before the first step: the canary never had weight
        assert "the canary pods to be ready" in str(last["message"]), run.describe()
        print(f"never-serving canary: {last['reason']}: {last['message']}")
    else:
        verdicts = r.events_of(Kind.VERDICT)
        failed = verdicts[verdicts["outcome"] == "fail"]
        assert len(failed) >= 1, run.describe()
        print(f"never-serving canary: {last['reason']}: {failed.iloc[0]['message']}")
    assert_exit_code(run, ExitCode.ROLLED_BACK)


def test_a_canary_with_no_route_share_at_weight_25_exits_2(
    controller: Any,
    sandbox: Any,
    api_client: Any,
    namespace: str,
    parent: dict[str, Any],
    tmp_path: Path,
) -> None:
    # The canary serves, but says it is v1: the probe sees no v2 answer at all while the
    # route gives the canary 25% — "the route says 25%, the canary got 0%".
    env = {"DEMO_VERSION": "v1", "DEMO_MESSAGE": CANARY_MESSAGE}
    run = run_cli(runbook_parameters(sandbox, namespace, tmp_path, canary_env=env), tmp_path)
    assert_rolled_back(api_client, sandbox, namespace, run, parent, (Reason.NO_CANARY_TRAFFIC,))
    r = run.record
    assert "v2" not in set(r.samples["version"])
    verdicts = r.events_of(Kind.VERDICT)
    share = verdicts[(verdicts["gate"] == "traffic-share") & (verdicts["outcome"] == "fail")]
    assert len(share) >= 1, run.describe()
    assert "NoCanaryTraffic" in str(share.iloc[0]["message"])
    numbers = share.iloc[0]["numbers"]
    assert numbers["canary_requests"] == 0
    assert numbers["requests"] > 0
    assert numbers["weight"] == 25
    assert "NoCanaryTraffic" in run.output  # the user sees why
    assert_exit_code(run, ExitCode.ROLLED_BACK)


def test_a_wrong_probe_target_fails_first_naming_the_probe_and_never_promotes(
    controller: Any,
    sandbox: Any,
    api_client: Any,
    namespace: str,
    parent: dict[str, Any],
    tmp_path: Path,
) -> None:
    nothing = f"http://127.0.0.1:{free_port()}/"  # nothing listens here
    params = runbook_parameters(
        sandbox, namespace, tmp_path, probe_target=nothing, canary_env={"DEMO_MESSAGE": "x"}
    )
    run = run_cli(params, tmp_path)
    assert "probe" in run.output.lower(), run.describe()
    assert nothing.rstrip("/") in run.output, run.describe()
    assert parent_template(api_client, namespace) == parent
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    r = run.record
    actions = r.events_of(Kind.ACTION)
    if len(actions):
        assert "replace" not in set(actions["what"])
    steps = r.events_of(Kind.STEP)
    if len(steps):
        assert StepState.PASSED not in set(steps["state"]), run.describe()
    probe = r.events_of(Kind.PROBE)
    assert "unreachable" in set(probe["state"]), run.describe()
    assert r.metadata["reason"] == Reason.PROBE_UNREACHABLE, r.metadata
    assert r.metadata["outcome"] != Outcome.SUCCEEDED
    last = last_run_event(r)
    assert last["reason"] in (Reason.PROBE_UNREACHABLE, Reason.PROBE_LOST), run.describe()
    assert "probe" in str(last["message"]).lower()
    assert last["outcome"] != Outcome.SUCCEEDED
    assert r.metadata.get("outcome") != Outcome.SUCCEEDED
    assert last["outcome"] == Outcome.ROLLED_BACK  # safe: the canary was never created
    assert "nothing was changed" in str(last["message"])
    assert_exit_code(run, ExitCode.ROLLED_BACK)


def test_a_healthy_canary_with_the_default_gates_is_promoted(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """The control of the tests above, shaped like ``make demo`` (3 + 3 replicas, steps
    5/25/50/100, hold 15 s, 200 req/s): the same default gates let a good canary through."""
    deploy_parent(api_client, namespace, replicas=3)
    before = parent_template(api_client, namespace)
    params = runbook_parameters(
        sandbox,
        namespace,
        tmp_path,
        replicas=3,
        steps=[5, 25, 50, 100],
        hold=15,
        canary_env={"DEMO_MESSAGE": "hello Hongbo"},
    )
    params.pop("max_hold")  # the runbook's default, as in the demo
    run = run_cli(params, tmp_path)
    r = run.record
    last = last_run_event(r)
    assert last["outcome"] == Outcome.SUCCEEDED, run.describe()
    assert r.metadata["outcome"] == Outcome.SUCCEEDED
    steps = r.events_of(Kind.STEP)
    assert list(steps[steps["state"] == StepState.PASSED]["weight"]) == [5, 25, 50, 100]
    assert parent_template(api_client, namespace) != before  # promoted
    dep = client.AppsV1Api(api_client).read_namespaced_deployment(PARENT, namespace)
    assert dep.spec.template.spec.containers[0].image == "canarylab/demo:v2"
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    assert_exit_code(run, ExitCode.OK)
