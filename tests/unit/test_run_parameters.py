"""``canarylab run``'s parameters: -p checked against the parameters cell, -r raw, -f files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import nbformat
import pytest
from click.testing import CliRunner

from canarylab.cli import cli
from canarylab.cli.parameters import (
    ANY,
    Parameter,
    given_parameters,
    kinds_of_annotation,
    read_file,
    runbook_parameters,
)

REPO = Path(__file__).resolve().parents[2]
ROLLOUT = REPO / "runbooks" / "canary-rollout.ipynb"


def cell(**defaults: str) -> dict[str, Parameter]:
    return {n: Parameter.from_cell(n, {"default": d}) for n, d in defaults.items()}


def test_a_string_parameter_keeps_the_text() -> None:
    declared = cell(version='"v2"', hold="30", steps="[5, 25]", dry_run="False", name="None")
    given = given_parameters(declared, {}, [("version", "1.10")], [])
    assert given == {"version": "1.10"}
    assert isinstance(given["version"], str)
    assert given_parameters(declared, {}, [("version", "true")], []) == {"version": "true"}
    # None, as papermill reads it, means "not set" in the runbooks (lease None: no lease)
    assert given_parameters(declared, {}, [("version", "None"), ("hold", "None")], []) == {
        "version": None,
        "hold": None,
    }


def test_typed_parameters_are_read_as_yaml_and_checked() -> None:
    declared = cell(hold="30", alpha="0.01", steps="[5, 25]", dry_run="False", gates="{}")
    assert given_parameters(declared, {}, [("hold", "7.5"), ("alpha", "1")], []) == {
        "hold": 7.5,
        "alpha": 1,
    }
    assert given_parameters(declared, {}, [("steps", "[5, 50]"), ("dry_run", "true")], []) == {
        "steps": [5, 50],
        "dry_run": True,
    }
    for name, value, words in (
        ("hold", "soon", "hold takes a number or None, not 'soon'"),
        ("steps", "5", "steps takes a list or None, not 5"),
        ("dry_run", "1", "dry_run takes true or false or None, not 1"),
        ("gates", "[1]", "gates takes a mapping"),
    ):
        with pytest.raises(click.BadParameter, match=words):
            given_parameters(declared, {}, [(name, value)], [])


def test_a_none_default_takes_any_yaml_value() -> None:
    declared = cell(max_hold="None", probe_target="None")
    assert given_parameters(declared, {}, [("max_hold", "90")], []) == {"max_hold": 90}
    assert given_parameters(declared, {}, [("probe_target", "http://x/")], []) == {
        "probe_target": "http://x/"
    }


def test_annotations_win_over_defaults() -> None:
    assert kinds_of_annotation("str | None") == {"str", "None"}
    assert kinds_of_annotation("Optional[int]") == {"int", "None"}
    assert kinds_of_annotation("typing.Union[str, list[int]]") == {"str", "list"}
    assert kinds_of_annotation("float") == {"int", "float"}
    assert kinds_of_annotation("Optional[MyType]") == ANY
    strict = Parameter.from_cell("replicas", {"default": "2", "inferred_type_name": "int"})
    with pytest.raises(click.BadParameter, match=r"replicas takes an integer, not 2\.5"):
        strict.from_text("2.5")
    name = Parameter.from_cell("name", {"default": "None", "inferred_type_name": "str | None"})
    assert name.from_text("1.10") == "1.10"
    # a YAML-quoted value (what json.dumps writes for a string) is the string inside
    assert name.from_text('"/tmp/out dir"') == "/tmp/out dir"
    assert name.from_text("'1.10'") == "1.10"
    assert name.from_text('"unterminated') == '"unterminated'
    assert name.from_text("None") is None


def test_unknown_names_are_refused_naming_the_known_ones() -> None:
    declared = cell(hold="30", steps="[5]")
    for text, raw, file in (
        ([("hols", "300")], [], {}),
        ([], [("hols", "x")], {}),
        ([], [], {"hols": 1}),
    ):
        with pytest.raises(
            click.BadParameter, match="no parameter 'hols'; its parameters: hold, steps"
        ):
            given_parameters(declared, file, text, raw)
    # no parameters cell: nothing to check against (papermill adds one)
    assert given_parameters({}, {}, [("anything", "5")], [("r", "5")]) == {"anything": 5, "r": "5"}


def test_raw_values_only_for_string_parameters() -> None:
    declared = cell(version='"v2"', hold="30", name="None")
    assert given_parameters(declared, {}, [], [("version", "[5]"), ("name", "0x10")]) == {
        "version": "[5]",
        "name": "0x10",
    }
    with pytest.raises(click.BadParameter, match="hold takes a number or None; -r passes text"):
        given_parameters(declared, {}, [], [("hold", "30")])


def test_a_parameters_file_is_checked_and_overridden_in_papermill_order(tmp_path: Path) -> None:
    declared = cell(version='"v2"', hold="30", steps="[5]")
    file = tmp_path / "params.yaml"
    file.write_text("version: 'v3'\nhold: 10\nsteps: [5, 50]\n")
    values = read_file(file)
    assert given_parameters(declared, values, [("hold", "20")], [("version", "v4")]) == {
        "version": "v4",
        "hold": 20,
        "steps": [5, 50],
    }
    file.write_text("version: 1.10\n")
    with pytest.raises(
        click.BadParameter, match=r"version takes a string or None, not 1\.1 \(quote it"
    ):
        given_parameters(declared, read_file(file), [], [])
    file.write_text("- 5\n")
    with pytest.raises(click.BadParameter, match="must be a YAML mapping"):
        read_file(file)


def test_the_canary_rollout_cell_types() -> None:
    declared = runbook_parameters(ROLLOUT)
    assert declared["version"].kinds == {"str", "None"}
    assert declared["steps"].kinds == {"list", "None"}
    assert declared["hold"].describe() == "a number or None"
    assert declared["dry_run"].kinds == {"bool", "None"}
    assert declared["name"].kinds == ANY


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-p", "hols", "300"], "no parameter 'hols'; its parameters: namespace, parent"),
        (["-p", "steps", "5"], "steps takes a list or None, not 5"),
        (["-r", "hold", "30"], "hold takes a number or None; -r passes text"),
        (["-f", "missing.yaml"], "does not exist"),
    ],
)
def test_bad_parameters_exit_64_before_any_kernel(args: list[str], words: str) -> None:
    result = CliRunner().invoke(cli, ["run", str(ROLLOUT), *args])
    assert result.exit_code == 64, result.output
    assert words in " ".join(result.output.split())


def test_values_reach_the_notebook_with_their_types(tmp_path: Path) -> None:
    """A real papermill run: the injected values are what the kernel sees."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('version = "v2"\nhold = 30\nname = None\nsteps = [5]')
    params.metadata["tags"] = ["parameters"]
    show = "import json; json.dump([version, hold, name, steps], open('seen.json', 'w'))"
    nb.cells = [params, nbformat.v4.new_code_cell(show)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "typed.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "params.yaml").write_text("steps: [5, 50]\nhold: 10\n")
    run = [
        str(Path(sys.executable).with_name("canarylab")),
        "run",
        str(path),
        "-o",
        "done.ipynb",
        "--quiet",
    ]
    args = ["-f", "params.yaml", "-p", "version", "1.10", "-p", "hold", "7.5", "-r", "name", "42"]
    done = subprocess.run(run + args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == ["1.10", 7.5, "42", [5, 50]]
