"""The notebooks are stored without outputs and say the same as their jupytext pairs."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PAIRS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.name for p in PAIRS} >= {"step-through.ipynb", "replay.ipynb"}


@pytest.mark.parametrize("path", PAIRS, ids=lambda p: p.name)
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: clear outputs before committing"
            assert cell.execution_count is None
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("path", PAIRS, ids=lambda p: p.name)
def test_paired_script_says_the_same(path: Path) -> None:
    script = path.with_suffix(".py")
    assert script.exists(), f"{script.name} missing: run jupytext --sync {path}"
    nb = nbformat.read(path, as_version=4)
    twin = jupytext.read(script)
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        (c.cell_type, c.source) for c in twin.cells
    ], f"{path.name} and {script.name} differ: run jupytext --sync notebooks/*.ipynb"
