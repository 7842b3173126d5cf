"""The package as a user installs it: what the wheel holds, what each extra brings, and
what the controller image needs.

The controller image installs deploy/controller-requirements.txt and then the wheel
with ``--no-deps``, so that file must name exactly the distributions the controller's
code imports. Here it is derived from the code: a fresh interpreter imports what
``canarylab controller`` imports (the CLI, the operator, the routers named in the
entry points), and the import statements of those modules are read, the lazy ones
inside functions included for the controller's own packages.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONTROLLER_REQUIREMENTS = REPO / "deploy" / "controller-requirements.txt"

# Where every import runs in the controller process, lazy ones included.
CONTROLLER_PACKAGES = (
    "canarylab.operator",
    "canarylab.routers",
    "canarylab.model",
    "canarylab.kube",
    "canarylab.errors",
    "canarylab.cli.controller",
)
# The distributions only a notebook or a browser needs: never in the controller image.
NOTEBOOK_STACK = {
    "jupyterlab",
    "voila",
    "anywidget",
    "ipywidgets",
    "plotly",
    "playwright",
    "papermill",
    "ipykernel",
    "pandas",
    "pyarrow",
    "scipy",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    assert match, spec
    return canonical(match.group(0))


def specs(lines: list[str]) -> dict[str, str]:
    """``{distribution: its full requirement string}``."""
    return {requirement_name(s): s.replace(" ", "") for s in lines}


def controller_requirements() -> dict[str, str]:
    lines = [
        line.split("#", 1)[0].strip() for line in CONTROLLER_REQUIREMENTS.read_text().splitlines()
    ]
    return specs([line for line in lines if line])


def controller_modules() -> dict[str, str]:
    """``{module: file}`` of the canarylab modules a started controller has imported."""
    routers = PYPROJECT["project"]["entry-points"]["canarylab.routers"].values()
    code = "\n".join(
        [
            "import json, sys",
            "import canarylab.cli",
            "import canarylab.operator.run",
            "from canarylab.operator import cluster, handlers, metrics, reconcile",
            *(f"import {target.split(':')[0]}" for target in routers),
            "print(json.dumps({n: m.__file__ for n, m in sys.modules.items()"
            " if n.split('.')[0] == 'canarylab' and getattr(m, '__file__', None)}))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    return dict(json.loads(out.stdout))


def imported_top_names(module: str, path: str) -> set[str]:
    """Top-level names of absolute imports: all of them in the controller's packages,
    else only those run at import time (a CLI module's lazy imports belong to other
    commands)."""
    tree = ast.parse(Path(path).read_text())
    everywhere = module.startswith(CONTROLLER_PACKAGES)
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def third_party_distributions(names: set[str]) -> set[str]:
    by_module = md.packages_distributions()
    dists: set[str] = set()
    for name in names - set(sys.stdlib_module_names) - {"canarylab", "__future__"}:
        assert name in by_module, f"{name} is imported but no installed distribution has it"
        dists |= {canonical(d) for d in by_module[name]}
    return dists


def test_controller_requirements_are_what_the_controller_imports() -> None:
    modules = controller_modules()
    names: set[str] = set()
    for module, path in modules.items():
        names |= imported_top_names(module, path)
    needed = third_party_distributions(names)
    listed = set(controller_requirements())
    assert listed == needed, (
        f"deploy/controller-requirements.txt: add {sorted(needed - listed)}, "
        f"remove {sorted(listed - needed)} (derived from {len(modules)} controller modules)"
    )


def test_controller_requirements_keep_pyproject_bounds() -> None:
    declared = specs(PYPROJECT["project"]["dependencies"])
    for name, spec in controller_requirements().items():
        assert name in declared, f"{name} is not a dependency in pyproject.toml"
        assert spec == declared[name], f"{spec!r} differs from pyproject.toml's {declared[name]!r}"
    assert not set(controller_requirements()) & NOTEBOOK_STACK


def test_the_dockerfile_installs_only_the_controller_requirements() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "deploy/controller-requirements.txt" in dockerfile
    assert re.search(r"pip install[^\n]*--no-deps[^\n]*\.whl", dockerfile), (
        "the wheel must go in with --no-deps, after the controller's requirements"
    )


def test_every_major_has_an_upper_bound() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    runtime = [*project["dependencies"], *extras["notebook"]]
    unbounded = [s for s in runtime if "<" not in s]
    assert not unbounded, f"no upper bound on {unbounded}"


def test_the_jupyter_stack_is_an_extra() -> None:
    project = PYPROJECT["project"]
    base = set(specs(project["dependencies"]))
    notebook = set(specs(project["optional-dependencies"]["notebook"]))
    assert {"jupyterlab", "voila", "anywidget", "ipywidgets"} <= notebook
    assert not base & {"jupyterlab", "voila", "anywidget", "ipywidgets", "playwright"}
    assert "canarylab[notebook]" in project["optional-dependencies"]["dev"]


def test_dev_extra_has_what_the_tests_import() -> None:
    """`make venv` installs `.[dev]`: every distribution the tests import must come with it."""
    names: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    needed = third_party_distributions(names - {"tests", "benchmarks"})
    reachable = requirement_closure(["canarylab[dev]"])
    assert needed <= reachable, f"tests import {sorted(needed - reachable)}, not in .[dev]"


def requirement_closure(roots: list[str]) -> set[str]:
    """Installed distributions that ``roots`` pull in, following extras and markers."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return {s for s in seen if "[" not in s}


def test_every_package_is_listed() -> None:
    """pyproject lists its packages (to map runbooks/ and notebooks/ into the wheel);
    a new package under canarylab/ must be listed too, or the wheel lacks it."""
    config = PYPROJECT["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "canarylab").rglob("__init__.py")
    }
    listed = set(config["packages"])
    assert found <= listed, f"add {sorted(found - listed)} to pyproject's packages"
    assert config["package-dir"] == {
        "canarylab.runbooks": "runbooks",
        "canarylab.notebooks": "notebooks",
    }
    assert listed - found == {"canarylab.runbooks", "canarylab.notebooks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("canarylab-*.whl")
    return built


def test_the_wheel_ships_runbooks_notebooks_and_crds(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (
        ("runbooks", "canarylab/runbooks"),
        ("notebooks", "canarylab/notebooks"),
    ):
        for notebook in (REPO / folder).glob("*.ipynb"):
            assert f"{package}/{notebook.name}" in names
    assert "canarylab/crds/canarydeployments.canarylab.io.yaml" in names
    assert "canarylab/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "runbooks/", "notebooks/"))]


def test_the_installed_wheel_finds_its_runbooks(wheel: Path, tmp_path: Path) -> None:
    """The wheel in a venv of its own, run from an empty directory: no checkout in sight.

    Its dependencies come from this environment's site-packages (read as a plain path,
    so this checkout's editable install is not picked up): offline and quick.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(site, "deps.pth").write_text(ours + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import sys, canarylab, importlib.resources as r\n"
        "assert canarylab.__file__.startswith(sys.argv[1]), canarylab.__file__\n"
        "for package in ('canarylab.runbooks', 'canarylab.notebooks'):\n"
        "    print(sorted(p.name for p in r.files(package).iterdir() if p.suffix == '.ipynb'))\n"
    )
    out = subprocess.run(
        [python, "-c", code, site], check=True, capture_output=True, text=True, cwd=empty
    ).stdout.splitlines()
    assert "'canary-rollout.ipynb'" in out[0]
    assert "'step-through.ipynb'" in out[1]
    help_text = subprocess.run(
        [venv / "bin" / "canarylab", "--help"], capture_output=True, text=True, cwd=empty
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "controller" in help_text.stdout
    found = subprocess.run(
        [
            python,
            "-c",
            "from canarylab.cli.run import find_runbook; from canarylab.cli.dashboard import "
            "NOTEBOOK; from canarylab.cli.demo import runbook_path; "
            "print(find_runbook('canary-rollout').resolve()); print(NOTEBOOK); print(runbook_path())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=empty,
    ).stdout.splitlines()
    assert found == [
        f"{site}/canarylab/runbooks/canary-rollout.ipynb",
        f"{site}/canarylab/notebooks/step-through.ipynb",
        f"{site}/canarylab/runbooks/canary-rollout.ipynb",
    ]


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not a pin (name==version)"
            pins[canonical(name)] = version
    return pins


def test_constraints_pin_everything_dev_pulls_in_within_the_bounds() -> None:
    from packaging.requirements import Requirement

    pins = constraints()
    closure = requirement_closure(["canarylab[dev]"]) - {"canarylab"}
    installed = {n for n in closure if installed_version(n) is not None}
    assert installed <= set(pins), f"constraints.txt lacks {sorted(installed - set(pins))}"
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    for spec in [*project["dependencies"], *extras["notebook"], *extras["dev"]]:
        req = Requirement(spec)
        if canonical(req.name) == "canarylab":
            continue
        pinned = pins.get(canonical(req.name))
        assert pinned is not None, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pinned, prereleases=True), f"{req.name}=={pinned} !~ {spec}"


def test_this_environment_runs_the_pinned_direct_dependencies() -> None:
    """What the tests run with is what CI installs (direct dependencies; a transitive
    drift shows in pip's resolver, not here)."""
    pins = constraints()
    project = PYPROJECT["project"]
    direct = specs(project["dependencies"]) | specs(project["optional-dependencies"]["notebook"])
    drift = {
        name: (installed_version(name), pins[name])
        for name in direct
        if installed_version(name) not in (None, pins[name])
    }
    assert not drift, f"installed vs constraints.txt: {drift}; regenerate or reinstall"


def installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def test_the_controller_memory_limit_holds_the_measured_peak() -> None:
    """deploy/controller.yaml's limit stays above every controller peak RSS that
    benchmarks/README.md reports, with a quarter to spare (an OOM-kill mid-rollout
    leaves routes where the controller last put them)."""
    import yaml

    docs = list(yaml.safe_load_all((REPO / "deploy" / "controller.yaml").read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    limit = container["resources"]["limits"]["memory"]
    match = re.fullmatch(r"(\d+)(Mi|Gi)", limit)
    assert match, f"memory limit {limit!r}: write it in Mi or Gi"
    limit_mib = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)
    rows = [
        line
        for line in (REPO / "benchmarks" / "README.md").read_text().splitlines()
        if line.startswith("|") and "peak RSS" in line
    ]
    measured = [int(m) for row in rows for m in re.findall(r"(?<!≤ )\b(\d+) MiB", row)]
    assert measured, "benchmarks/README.md reports no controller peak RSS"
    assert limit_mib >= 1.25 * max(measured), f"{limit} < 1.25 x {max(measured)} MiB measured"
