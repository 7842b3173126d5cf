"""Both notebooks executed headless (papermill, kernel python3) against the sandbox.

The step-through notebook walks create → shift → replace → delete by pressing its own
panel's buttons; the replay notebook and ``canarylab replay --html`` replay the record
of a real runbook run, and the replayed per-step table is the one the runbook printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import papermill as pm
import pytest

from canarylab import record
from canarylab.dataplane.routes import sandbox_host
from canarylab.plots import replay as replays
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    parent_image,
    route_is_all_parent,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
RUNBOOK = REPO / "runbooks" / "canary-rollout.ipynb"


def run_notebook(path: Path, out: Path, **parameters: Any) -> dict[str, Any]:
    pm.execute_notebook(
        str(path),
        str(out),
        parameters=parameters,
        kernel_name="python3",  # never the kernelspec baked into the file
        progress_bar=False,
        cwd=str(REPO),
        execution_timeout=300,
    )
    return dict(json.loads(out.read_text()))


def outputs_text(nb: dict[str, Any]) -> str:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            for value in (o.get("data") or {}).values():
                parts.append(value if isinstance(value, str) else "".join(map(str, value)))
    return "\n".join(parts)


def test_step_through_notebook_walks_the_rollout_and_records_it(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace)
    nb = run_notebook(
        NOTEBOOKS / "step-through.ipynb",
        tmp_path / "step-through.ipynb",
        namespace=namespace,
        parent=PARENT,
        replicas=1,
        kubeconfig=str(sandbox.kubeconfig),
        record_dir=str(tmp_path / "record"),
        probe_rate=150,
        walk=True,
        walk_weights=[20, 60],
        hold_s=2,
    )
    text = outputs_text(nb)
    assert "weight 60 (applied 60)" in text
    assert parent_image(api_client, namespace) == "canarylab/demo:v2"
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    r = record.load(tmp_path / "record")
    actions = r.events_of("action")
    whats = list(actions["what"])
    in_order = [w for i, w in enumerate(whats) if i == 0 or w != whats[i - 1]]
    assert in_order == ["create_canary", "set_weight", "replace", "delete"]
    assert list(actions[actions["what"] == "set_weight"]["weight"]) == [20, 60]
    assert set(r.samples["version"]) >= {"v1", "v2"}
    assert r.totals["failed"] == 0
    assert r.metadata["outcome"] == "succeeded"


@pytest.fixture(scope="module")
def runbook_record(
    controller: Any, sandbox: Any, api_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A real rollout: the canary-rollout runbook through papermill, steps 20/60/100."""
    import uuid

    from kubernetes import client

    namespace = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    out = tmp_path_factory.mktemp("runbook")
    deploy_parent(api_client, namespace)
    gateway = str(sandbox.status()["gateway"]).rstrip("/") + "/"
    run_notebook(
        RUNBOOK,
        out / "canary-rollout.ipynb",
        namespace=namespace,
        parent=PARENT,
        image="canarylab/demo:v2",
        version="v2",
        replicas=1,
        steps=[20, 60, 100],
        hold=4,
        gates={"max_error_rate": {"limit": 0.05, "min_requests": 40}},
        probe_target=gateway,
        probe_headers={"Host": sandbox_host(PARENT, namespace)},
        probe_rate=200,
        kubeconfig=str(sandbox.kubeconfig),
        output_dir=str(out),
    )
    client.CoreV1Api(api_client).delete_namespace(namespace)
    return out


def test_replay_gives_the_step_table_the_runbook_printed(runbook_record: Path) -> None:
    printed = pd.read_csv(runbook_record / "summary.csv")  # what the runbook displayed
    replay = replays.load(runbook_record)  # a run's output dir finds its record/
    recorded = replay.recorded_steps()
    pd.testing.assert_frame_equal(
        recorded.reset_index(drop=True), printed, check_dtype=False, rtol=1e-9
    )
    replayed = replay.replayed_steps()
    assert list(replayed["step"]) == list(printed["step"])
    assert list(replayed["weight"]) == list(printed["weight"])
    assert list(replayed["verdict"]) == list(printed["verdict"])
    # Recomputed from the record's samples: the same traffic, plus the seconds that closed
    # after the gate's last look (on a loaded machine the probe feed lags by seconds), so
    # never less than the runbook counted.
    for version in ("v1", "v2"):
        column = f"requests {version}"
        if column in printed:
            extra = replayed[column].fillna(0) - printed[column].fillna(0)
            assert (extra >= 0).all()


def test_replay_notebook_and_html_report(runbook_record: Path, tmp_path: Path) -> None:
    nb = run_notebook(
        NOTEBOOKS / "replay.ipynb",
        tmp_path / "replay.ipynb",
        record_dir=str(runbook_record / "record"),
    )
    text = outputs_text(nb)
    assert "max-error-rate" in text  # the verdicts table
    assert "set_weight" in text  # the operator actions
    assert not any(
        o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", [])
    )
    html = tmp_path / "report.html"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "canarylab"),
            "replay",
            str(runbook_record),
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(done.stderr + done.stdout)
    r = record.load(runbook_record / "record")
    assert done.stdout.strip().splitlines()[-1] == f"requests: {r.totals['requests']}, failed: 0"
    page = html.read_text()
    assert '<script src="http' not in page  # self-contained: plotly.js is inlined
    assert page.count("Plotly.newPlot") >= 3
    assert '"sliders"' in page  # the time slider
    assert "max-error-rate" in page
