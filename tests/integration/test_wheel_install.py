"""canarylab as a user installs it: the wheel in a fresh venv, used from an empty directory.

The wheel is built from this checkout and installed with its ``[notebook]`` extra into a
new venv, its dependencies pinned by constraints.txt (pip's cache keeps a second run
quick). Everything then runs from that venv's ``bin/`` in an empty temporary directory,
with no ``PYTHONPATH`` and no checkout in reach, against the session's real sandbox:
``canarylab sandbox up``/``status``, ``canarylab demo`` (whole rollout, controller
included), ``canarylab run canary-rollout -p …`` with the wheel's controller running, and
``canarylab dashboard`` serving the wheel's notebook for a canary named in the URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    venv: Path
    site: Path
    """The venv's site-packages, where the wheel's canarylab lives."""
    env: dict[str, str]
    """A user's environment: the venv's bin first, no PYTHONPATH, no KUBECONFIG."""

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin("canarylab"), *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wheelhouse() -> Path:
    """Where the pinned dependencies' files are kept between runs (pip's own cache is not
    always writable or kept): the canarylab cache, one directory per constraints.txt."""
    import hashlib

    from canarylab.sandbox.build import cache_root

    digest = hashlib.sha256((REPO / "constraints.txt").read_bytes()).hexdigest()[:12]
    house = cache_root() / "wheelhouse" / digest
    house.mkdir(parents=True, exist_ok=True)
    return house


def source(root: Path) -> Path:
    """The checkout's files that git does not ignore, copied: setuptools builds in the
    source tree, and a build/ left there by an earlier build (or another) must not leak
    into this wheel."""
    import shutil

    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    src = root / "src"
    for name in filter(None, files):
        path = REPO / name.decode()
        if path.is_file():
            (src / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name.decode())
    return src


@pytest.fixture(scope="module")
def installed(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel-install")
    dist = root / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(dist),
            str(source(root)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("canarylab-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    wanted = ["-c", str(REPO / "constraints.txt"), f"canarylab[notebook] @ {wheel.as_uri()}"]
    house = wheelhouse()
    if not (house / "complete").exists():  # once per constraints.txt: download the pins
        got = subprocess.run(
            [*pip, "download", "-q", "-d", str(house), *wanted],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert got.returncode == 0, got.stderr[-3000:]
        (house / "complete").touch()
    done = subprocess.run(  # offline: exactly the pinned files downloaded above
        [*pip, "install", "-q", "--no-index", "--find-links", str(house), *wanted],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CANARYLAB_SANDBOX_DIR"] = str(sandbox.state_dir)  # the session's running sandbox
    env["PYTHONUNBUFFERED"] = "1"
    return Installed(venv, site, env)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    where = tmp_path / "empty"
    where.mkdir()
    return where


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Installed, empty: Path
) -> None:
    code = "import canarylab, canarylab.cli.paths as p; print(canarylab.__file__); print(p.shipped('runbooks'))"
    out = subprocess.run(
        [installed.bin("python"), "-c", code],
        cwd=empty,
        env=installed.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out == [
        str(installed.site / "canarylab" / "__init__.py"),
        str(installed.site / "canarylab" / "runbooks"),
    ]


def test_the_wheel_builds_the_sandbox_from_the_same_sources(
    installed: Installed, empty: Path
) -> None:
    """The Go modules ship in the wheel whole: the installed package fingerprints them as
    the checkout does, so it finds the binaries already built (no second 10-minute build)."""
    from canarylab.sandbox import build

    code = (
        "import json; from canarylab.sandbox import build; "
        "print(json.dumps({n: [c.fingerprint(), c.is_built()] for n, c in build.COMPONENTS.items()}))"
    )
    out = subprocess.run(
        [installed.bin("python"), "-c", code],
        cwd=empty,
        env=installed.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    expected = {n: [c.fingerprint(), c.is_built()] for n, c in build.COMPONENTS.items()}
    assert json.loads(out) == expected
    assert all(expected[name][1] for name in ("kube", "etcd", "kwok")), expected  # the sandbox runs


def test_sandbox_up_and_status_from_the_wheel(
    installed: Installed, sandbox: Any, empty: Path
) -> None:
    up = installed.run("sandbox", "up", cwd=empty, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "sandbox ready" in up.stdout
    status = installed.run("sandbox", "status", cwd=empty, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert sandbox.status()["gateway"] in status.stdout


def test_demo_from_the_wheel_in_an_empty_directory(
    installed: Installed, api_client: Any, empty: Path
) -> None:
    demo = installed.run("demo", "--hold", "8", "--out", "out/demo", cwd=empty, timeout=900)
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-4000:]
    assert "rollout succeeded" in demo.stdout
    last = demo.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"requests: [1-9]\d*, failed: \d+", last), last
    assert (empty / "out" / "demo" / "report.html").stat().st_size > 10_000
    parent = client.AppsV1Api(api_client).read_namespaced_deployment("hello", "demo")
    assert parent.spec.template.spec.containers[0].image == "canarylab/demo:v2"
    assert sorted(p.name for p in empty.iterdir()) == ["out"]  # nothing written elsewhere


@contextlib.contextmanager
def controller(installed: Installed, kubeconfig: Path, log: Path) -> Iterator[None]:
    """The wheel's ``canarylab controller``, alive (its liveness endpoint answers)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                installed.bin("canarylab"),
                "controller",
                "--kubeconfig",
                str(kubeconfig),
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                "--metrics-port",
                str(free_port()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=installed.env,
        )

    def alive() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(alive, 120, interval=0.3, what="the wheel's controller to be alive")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_runbook_from_the_wheel_with_a_version_that_looks_like_a_number(
    installed: Installed, sandbox: Any, api_client: Any, empty: Path
) -> None:
    """After the demo (parent at v2): canary-rollout to version "3.10", found in the wheel.
    The version must reach the API as the string "3.10" (as a float it would be 3.1 and
    refused)."""
    from canarylab.rollout import sample_app

    sample_app.wait_parent_ready(api_client, "demo", "hello", timeout=120)
    args = [
        "run",
        "canary-rollout",
        *("-p", "namespace", "demo", "-p", "parent", "hello"),
        *("-p", "image", "canarylab/demo:3.10", "-p", "version", "3.10"),
        *("-p", "steps", "[50, 100]", "-p", "hold", "5", "-p", "replicas", "2"),
        *("-p", "output_dir", "out/run"),
    ]
    with controller(installed, Path(sandbox.kubeconfig), empty.parent / "controller.log"):
        run = installed.run(*args, cwd=empty, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert (empty / "out" / "run" / "canary-rollout.ipynb").exists()
    parent = client.AppsV1Api(api_client).read_namespaced_deployment("hello", "demo")
    assert parent.spec.template.spec.containers[0].image == "canarylab/demo:3.10"
    steps = (empty / "out" / "run" / "summary.csv").read_text().strip().splitlines()
    assert len(steps) == 1 + 2, steps  # a header and the two steps


def test_dashboard_from_the_wheel_serves_the_canary_named_in_the_url(
    installed: Installed, sandbox: Any, empty: Path
) -> None:
    """voila from the wheel's venv renders the wheel's notebook for ?namespace=&parent=:
    the page holds the panel's widget and the status names that canary."""
    port = free_port()
    log = empty.parent / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [installed.bin("canarylab"), "dashboard", "--port", str(port), "--record", "records"],
            cwd=empty,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**installed.env, "KUBECONFIG": str(sandbox.kubeconfig)},
        )
    try:

        def page() -> str | None:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                url = f"http://127.0.0.1:{port}/?namespace=demo&parent=hello"
                with urllib.request.urlopen(url, timeout=300) as r:
                    return str(r.read().decode())
            except OSError:
                return None

        html = wait_for(page, 300, interval=1, what="the dashboard to render")
        assert "application/vnd.jupyter.widget-view+json" in html
        assert "demo/hello" in html
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
