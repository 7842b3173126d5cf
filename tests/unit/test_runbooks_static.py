"""Runbooks are stored clean and take the documented parameters; `canarylab run`'s helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import nbformat
import pytest

from canarylab.cli.parameters import parse_value
from canarylab.cli.run import find_runbook, output_path

REPO = Path(__file__).resolve().parents[2]


def parameters_of(name: str) -> dict[str, object]:
    nb = nbformat.read(REPO / "runbooks" / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} is stored with outputs"
            assert cell.execution_count is None
    names: dict[str, object] = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign)
        names[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    return names


def test_canary_rollout_parameters() -> None:
    params = parameters_of("canary-rollout.ipynb")
    for name in (
        "namespace",
        "parent",
        "image",
        "version",
        "replicas",
        "steps",
        "hold",
        "gates",
        "probe_target",
        "probe_rate",
        "probe_classifier",
        "output_dir",
        "dry_run",
    ):
        assert name in params, name
    assert params["dry_run"] is False


def test_abort_parameters() -> None:
    assert {"namespace", "name", "kubeconfig", "record_dir"} <= set(parameters_of("abort.ipynb"))


def test_parameter_values_are_yaml() -> None:
    assert parse_value("5") == 5
    assert parse_value("0.2") == 0.2
    assert parse_value("[5, 25]") == [5, 25]
    assert parse_value("true") is True
    assert parse_value("{DEMO_ERROR_RATE: '0.2'}") == {"DEMO_ERROR_RATE": "0.2"}
    assert parse_value("hello") == "hello"
    assert parse_value("{unclosed") == "{unclosed"


def test_output_naming(tmp_path: Path) -> None:
    rb = Path("runbooks/canary-rollout.ipynb")
    assert output_path(rb, {}, "x.ipynb") == Path("x.ipynb")
    assert output_path(rb, {"output_dir": "out/a"}, None) == Path("out/a/canary-rollout.ipynb")
    default = output_path(rb, {}, None)
    assert default.parent == Path("out/runs")
    assert default.name.startswith("canary-rollout-")


def test_find_runbook_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert find_runbook("canary-rollout") == Path("runbooks/canary-rollout.ipynb")
    with pytest.raises(click.BadParameter, match="known runbooks: abort, canary-rollout"):
        find_runbook("nope")


@pytest.mark.parametrize("name", ["canary-rollout", "abort"])
def test_runbooks_and_their_py_twins_agree(name: str) -> None:
    import jupytext

    nb = nbformat.read(REPO / "runbooks" / f"{name}.ipynb", as_version=4)
    twin = jupytext.read(REPO / "runbooks" / f"{name}.py")
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        (c.cell_type, c.source) for c in twin.cells
    ], f"runbooks/{name}: run `.venv/bin/jupytext --sync runbooks/*.ipynb`"
