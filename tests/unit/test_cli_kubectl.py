"""The kubectl-style rollout verbs without a cluster: output, parsing, waits, completion."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from canarylab.cli import cli
from canarylab.cli import kubectl_output as out
from canarylab.cli.kubectl import completions
from canarylab.cli.rollout import COMMANDS, wait_verdict
from canarylab.record.events import ExitCode
from canarylab.rollout.status import parse

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def cdep(name: str = "web", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "canarylab.io/v1alpha1",
        "kind": "CanaryDeployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": "2026-12-02T11:57:00Z",
            "generation": 2,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"parentDeployment": name, "version": "v2", "weight": 40, "replicas": 1},
        "status": {"observedGeneration": 2, **status},
    }


SERVING = {
    "phase": "Serving",
    "weights": {"parent": 60, "canary": 40},
    "canary": {"readyReplicas": 1, "replicas": 1},
    "reason": "WeightApplied",
    "message": "parent 60%, canary 40%",
}


def test_the_table_has_the_crds_printer_columns() -> None:
    text = out.table([cdep(**SERVING)], out.packaged_columns(), NOW)
    header, row = text.splitlines()
    assert header.split() == [
        "NAME",
        "PARENT",
        "VERSION",
        "WEIGHT",
        "APPLIED",
        "PHASE",
        "READY",
        "AGE",
    ]
    assert row.split() == ["web", "web", "v2", "40", "40", "Serving", "1", "3m0s"]


def test_wide_adds_holder_reason_and_message() -> None:
    text = out.table([cdep(**SERVING)], out.packaged_columns(), NOW, wide=True)
    header, row = text.splitlines()
    assert header.split()[-3:] == ["HOLDER", "REASON", "MESSAGE"]
    assert row.endswith("<none>   WeightApplied   parent 60%, canary 40%")


def test_a_canary_without_status_shows_blank_cells() -> None:
    obj = cdep()
    del obj["status"]
    (row,) = out.table([obj], out.packaged_columns(), NOW, headers=False).splitlines()
    assert row.split() == ["web", "web", "v2", "40", "3m0s"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (192, "3m12s"),
        (1500, "25m"),
        (5 * 3600 + 600, "5h10m"),
        (30 * 3600, "30h"),
        (76 * 3600, "3d4h"),
        (20 * 86400, "20d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_age_as_kubectl_shows_it(seconds: int, shown: str) -> None:
    start = (NOW - dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    assert out.age(start, NOW) == shown


def test_json_and_yaml_are_the_object_without_managed_fields() -> None:
    one = yaml.safe_load(out.render([cdep(**SERVING)], "yaml", single=True))
    assert one["kind"] == "CanaryDeployment"
    assert "managedFields" not in one["metadata"]
    assert one["status"]["phase"] == "Serving"
    many = json.loads(out.render([cdep("a"), cdep("b")], "json", single=False))
    assert (many["kind"], [i["metadata"]["name"] for i in many["items"]]) == ("List", ["a", "b"])
    assert out.render([cdep("a")], "name", single=True) == "canarydeployment.canarylab.io/a"


def test_watch_prints_again_on_changes_not_on_lease_renewals() -> None:
    a = cdep(**SERVING)
    renewed = cdep(**SERVING)
    renewed["spec"]["lease"] = {"holder": "me", "renewTime": "later"}
    renewed["metadata"]["generation"] = 3
    assert out.watch_key(a) == out.watch_key(renewed)
    aborted = cdep(**{**SERVING, "phase": "Aborted", "weights": {"parent": 100, "canary": 0}})
    assert out.watch_key(a) != out.watch_key(aborted)


@pytest.mark.parametrize(
    ("phase", "wanted", "code"),
    [
        ("Serving", {"Serving"}, ExitCode.OK),
        ("Progressing", {"Serving"}, None),
        ("Paused", {"Serving"}, None),  # its driver may renew the lease
        ("Failed", {"Serving"}, ExitCode.UNSAFE),
        ("Aborted", {"Serving"}, ExitCode.ROLLED_BACK),
        ("Aborted", {"Aborted"}, ExitCode.OK),
        ("Replaced", {"Serving"}, ExitCode.ERROR),
        ("Replaced", {"Replaced", "Failed"}, ExitCode.OK),
    ],
)
def test_wait_verdicts(phase: str, wanted: set[str], code: ExitCode | None) -> None:
    assert wait_verdict(parse(cdep(phase=phase)), frozenset(wanted)) == code


def test_wait_verdict_of_an_unobserved_or_gone_canary() -> None:
    stale = cdep(phase="Serving")
    stale["status"]["observedGeneration"] = 1  # the controller has not seen generation 2
    assert wait_verdict(parse(stale), frozenset({"Serving"})) is None
    from canarylab.rollout.status import absent

    assert wait_verdict(absent("web"), frozenset({"Serving"})) == ExitCode.ROLLED_BACK


@pytest.mark.parametrize(
    "args",
    [
        ["set", "weight", "web", "140"],
        ["create", "web", "--image", "app:v2"],  # no --version
        ["status", "--wait-for", "Serving"],  # no NAME
        ["status", "web", "--wait-for", "Sleeping"],
        ["get", "-o", "xml"],
        ["create", "web", "--version", "v2", "--image", "i", "--env", "NOEQUALS"],
    ],
)
def test_bad_input_exits_64(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, standalone_mode=True)
    assert result.exit_code == ExitCode.USAGE, result.output


def test_create_f_refuses_other_kinds(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    result = CliRunner().invoke(cli, ["create", "-f", str(path)])
    assert result.exit_code == ExitCode.USAGE
    assert "is a Deployment, not a CanaryDeployment" in result.output


def verbs() -> list[str]:
    return [c.name for c in COMMANDS if c.name]


@pytest.mark.parametrize("verb", [*verbs(), "set weight"])
def test_every_verb_takes_context_kubeconfig_and_namespace(verb: str) -> None:
    result = CliRunner().invoke(cli, [*verb.split(), "--help"])
    assert result.exit_code == 0, result.output
    if verb == "set":
        return
    for flag in ("--context", "--kubeconfig", "-n, --namespace"):
        assert flag in result.output, (verb, flag)
    assert "context's namespace" in result.output


def test_old_verb_names_are_hidden_aliases() -> None:
    shown = CliRunner().invoke(cli, ["--help"]).output
    for verb in ("create", "get", "status", "set", "promote", "abort", "resume", "delete"):
        assert f"  {verb} " in shown
    assert "  weight " not in shown
    assert "  replace " not in shown
    assert CliRunner().invoke(cli, ["weight", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["replace", "--help"]).exit_code == 0


def test_kubectl_plugin_completion() -> None:
    assert completions(["se"]) == ["set"]
    assert completions(["set", ""]) == ["weight"]
    assert "--context" in completions(["get", "--"])
    assert "yaml" in completions(["get", "web", "-o", ""])


@pytest.mark.parametrize(
    ("script", "var"),
    [("canarylab", "_CANARYLAB_COMPLETE"), ("kubectl-canarylab", "_KUBECTL_CANARYLAB_COMPLETE")],
)
def test_the_documented_completion_scripts(script: str, var: str) -> None:
    """docs/cli.md: `eval "$(_CANARYLAB_COMPLETE=bash_source canarylab)"`, and the plugin's."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / script
    for shell in ("bash", "zsh", "fish"):
        env = {**os.environ, var: f"{shell}_source"}
        made = subprocess.run([str(exe)], env=env, capture_output=True, text=True, check=True)
        assert var in made.stdout, shell
    kubectl_side = Path(sys.executable).parent / "kubectl_complete-canarylab"
    done = subprocess.run([str(kubectl_side), "prom"], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["promote", ":4"]


def test_a_wait_shows_each_status_change_once(capsys: pytest.CaptureFixture[str]) -> None:
    from canarylab.cli.rollout import Progress, Watch

    watch = Watch(None, Progress())
    for message in ("web: Progressing, weight 10", "web: Progressing, weight 10", "web: Serving"):
        watch.event("status", message=message)
    watch.event("action", message="not shown")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["… web: Progressing, weight 10", "… web: Serving"]
