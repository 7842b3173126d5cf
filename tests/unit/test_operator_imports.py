"""The controller's import graph stays free of the notebook and data stack.

The controller runs in a pod with a memory limit: pandas, pyarrow, plotly, ipywidgets,
papermill and Jupyter cost tens of MiB before any object is seen, and the controller
needs none of them. Each check imports in a fresh interpreter, so what other tests
imported does not hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pandas", "pyarrow", "plotly", "ipywidgets", "papermill", "nbformat", "nbclient")
FORBIDDEN_PREFIXES = ("jupyter",)


def loaded_after(*statements: str) -> tuple[list[str], float]:
    """Forbidden top-level modules loaded, and the RSS in MiB, after ``statements``."""
    code = "\n".join(
        [
            "import json, sys",
            *statements,
            "rss = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024",
            "print(json.dumps([sorted({m.split('.')[0] for m in sys.modules}), rss]))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    tops, rss = json.loads(out.stdout)
    bad = [t for t in tops if t in FORBIDDEN or t.startswith(FORBIDDEN_PREFIXES)]
    return bad, float(rss)


def router_modules() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    targets = pyproject["project"]["entry-points"]["canarylab.routers"].values()
    return sorted({t.split(":")[0] for t in targets})


def test_the_operator_and_its_routers_load_no_notebook_or_data_stack() -> None:
    bad, _ = loaded_after(
        "import canarylab.operator",
        "from canarylab.operator import cluster, handlers, metrics, reconcile, run",
        "import canarylab.cli.controller",
        *(f"import {m}" for m in router_modules()),
    )
    assert bad == [], f"the controller's imports load {bad}; import them lazily where used"


def test_the_controller_command_loads_no_notebook_or_data_stack() -> None:
    bad, _ = loaded_after(
        "import canarylab.cli",
        "import canarylab.operator.run",
        "from canarylab.operator import handlers",
    )
    assert bad == [], f"`canarylab controller` loads {bad} before the operator starts"
