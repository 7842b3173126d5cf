"""`canarylab demo` only ever empties a directory that holds an earlier demo's output."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from canarylab.cli.demo import _fresh_output


def test_an_earlier_demo_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "record").mkdir(parents=True)
    (out / "summary.csv").write_text("step\n")
    _fresh_output(out)
    assert out.is_dir()
    assert list(out.iterdir()) == []


def test_a_directory_with_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(
        click.ClickException, match=r"holds files a demo did not write \(thesis.tex\)"
    ):
        _fresh_output(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_a_new_directory_is_created(tmp_path: Path) -> None:
    _fresh_output(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
