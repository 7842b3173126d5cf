"""The step-through notebook in a real browser: JupyterLab + Debian's Chromium + Playwright.

JupyterLab runs headless on loopback over a copy of the notebook (so autosave never
touches the checkout), with the cluster and namespace passed through the environment
the kernel inherits. Chromium runs all cells, presses the panel's create button, drags
the weight slider, and the test checks that the CanaryDeployment's weight changed and
that the live chart shows canary traffic. A screenshot is kept in test-artifacts/.

``canarylab dashboard`` (voila) gets the same in Chromium, with the canary chosen by the
page's URL: one server, two pages for two namespaces, each showing its own canary; on one,
create and a slider drag move that CanaryDeployment's weight and route.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from canarylab.rollout import Rollout
from canarylab.rollout.status import GROUP, PLURAL, VERSION
from tests.helpers import wait_for
from tests.integration.rollout_kit import PARENT, deploy_parent, route_backends

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CANARYLAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyterlab(root: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 without token, serving ``root``; yields its URL."""
    port = free_port()
    home = root / ".jupyter-home"
    for sub in ("config", "data", "runtime", "settings", "workspaces"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **env,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "jupyter"),
                "lab",
                "--no-browser",
                "--allow-root",  # CI runs as root
                "--LabApp.extension_manager=readonly",  # never reach a package index
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                "--ServerApp.disable_check_xsrf=True",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=",
                "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(up, 90, interval=0.5, what="JupyterLab to answer")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_all_cells(page: Any) -> None:
    """Run > Run All Cells once the kernel is idle; again if no cell started (a click can
    land before the notebook's session is wired up)."""
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).first.wait_for(timeout=180_000)
    for _ in range(6):
        page.keyboard.press("Escape")
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).first.click()
        started = page.locator(".jp-InputArea-prompt", has_text=re.compile(r"\[(\*|\d+)\]"))
        try:
            started.first.wait_for(timeout=15_000)
            return
        except Exception:
            continue
    raise AssertionError("JupyterLab never started running the notebook's cells")


def spec_weight(api: Any, namespace: str) -> int | None:
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, PARENT
        )
    except client.ApiException:
        return None
    return int(obj["spec"]["weight"])


def test_step_through_in_chromium_slider_moves_the_weight_and_the_chart_shows_canary(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`, "
            "which `make test` does through system-deps) or set CANARYLAB_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    deploy_parent(api_client, namespace)
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "step-through.ipynb", root / "step-through.ipynb")
    env = {
        "KUBECONFIG": str(sandbox.kubeconfig),
        "CANARYLAB_NAMESPACE": namespace,
        "CANARYLAB_PARENT": PARENT,
        "CANARYLAB_RECORD": str(tmp_path / "record"),
        "PYTHONPATH": str(REPO),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "step-through-chromium.png"
    rollout = Rollout(namespace, PARENT, kube=api_client)
    with (
        jupyterlab(root, env, tmp_path / "jupyterlab.log") as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)
        try:
            page.goto(f"{url}/lab/tree/step-through.ipynb", timeout=120_000)
            page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
            run_all_cells(page)

            create = page.get_by_role("button", name="create", exact=True)
            create.wait_for(timeout=180_000)
            create.click(timeout=180_000)  # a loaded 2-core CI machine starves the renderer
            wait_for(lambda: rollout.status().ready, 120, what="the canary to be ready")
            handle = page.locator(".widget-slider .noUi-handle").first
            # the panel re-enables the slider once it has seen the canary (1 s watcher)
            page.locator(".widget-slider .noUi-target:not([disabled])").first.wait_for(
                timeout=30_000
            )
            track = page.locator(".widget-slider .noUi-base").first.bounding_box()
            box = handle.bounding_box()
            assert track is not None
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(
                track["x"] + track["width"] * 0.5, box["y"] + box["height"] / 2, steps=8
            )
            page.mouse.up()

            weight = wait_for(
                lambda: (w := spec_weight(api_client, namespace)) and w > 0 and w,
                30,
                what="the slider to patch the CanaryDeployment's weight",
            )
            assert 30 <= weight <= 70  # dragged to the middle of a 0-100 slider
            wait_for(lambda: rollout.status().weight_applied, 30, what="the weight applied")
            # canary traffic on the live chart: the v2 traces exist once v2 samples arrive
            page.locator(".legendtext", has_text=re.compile(r"^v2$")).first.wait_for(timeout=60_000)
            page.wait_for_timeout(3000)  # a few more ticks, for the screenshot
            status = page.locator(".widget-html", has_text="phase").first.inner_text()
            assert f"desired {weight}%" in status
        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot), timeout=120_000)
            browser.close()
            with contextlib.suppress(Exception):
                rollout.delete(timeout=60)
    assert shot.stat().st_size > 10_000


@contextlib.contextmanager
def dashboard(env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """``canarylab dashboard`` (voila) on a free loopback port; yields its URL once it answers."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "canarylab"), "dashboard", "--port", str(port)],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited:\n{log.read_text()[-3000:]}")
        try:  # any HTTP answer (a 404 too) means it serves; "/" would start a kernel
            with urllib.request.urlopen(f"{url}/voila/no-such-page", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    try:
        wait_for(up, 120, interval=0.5, what="the dashboard to answer")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def drag_slider_to_middle(page: Any) -> None:
    handle = page.locator(".widget-slider .noUi-handle").first
    # the panel re-enables the slider once it has seen the canary (1 s watcher)
    page.locator(".widget-slider .noUi-target:not([disabled])").first.wait_for(timeout=60_000)
    track = page.locator(".widget-slider .noUi-base").first.bounding_box()
    box = handle.bounding_box()
    assert track is not None
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.5, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def test_dashboard_in_chromium_serves_the_canary_named_in_the_url_and_moves_its_weight(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """One ``canarylab dashboard`` server, two pages: each shows the canary its URL names;
    on the first, create and a slider drag move that CanaryDeployment's weight and route."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium or set CANARYLAB_CHROMIUM")
    from playwright.sync_api import sync_playwright

    deploy_parent(api_client, namespace)
    other = f"{namespace}-b"
    deploy_parent(api_client, other, replicas=1)
    env = {"KUBECONFIG": str(sandbox.kubeconfig)}  # no -n/--parent: the URL must choose
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-chromium.png"
    rollout = Rollout(namespace, PARENT, kube=api_client)
    untouched = Rollout(other, PARENT, kube=api_client)
    with (
        dashboard(env, tmp_path, tmp_path / "dashboard.log") as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(180_000)
        try:
            page.goto(f"{url}/?namespace={namespace}&parent={PARENT}", timeout=300_000)
            title = f"CanaryDeployment {namespace}/{PARENT}"
            page.get_by_text(title).first.wait_for(timeout=300_000)
            second = browser.new_page()
            second.goto(f"{url}/?namespace={other}&parent={PARENT}", timeout=300_000)
            second.get_by_text(f"CanaryDeployment {other}/{PARENT}").first.wait_for(timeout=300_000)
            second.close()  # voila shuts that page's kernel down

            page.get_by_role("button", name="create", exact=True).click(timeout=180_000)
            wait_for(lambda: rollout.status().ready, 180, what="the canary to be ready")
            drag_slider_to_middle(page)
            weight = wait_for(
                lambda: (w := spec_weight(api_client, namespace)) and w > 0 and w,
                60,
                what="the slider to patch the CanaryDeployment's weight",
            )
            assert 30 <= weight <= 70  # dragged to the middle of a 0-100 slider
            wait_for(lambda: rollout.status().weight_applied, 60, what="the route to carry it")
            assert route_backends(api_client, namespace).get(f"{PARENT}-canary") == weight
            assert not untouched.status().exists  # the other page only looked
            # each page records under its own canary, below the command's directory
            assert (tmp_path / "out" / "step-through" / namespace / PARENT).is_dir()
        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot), timeout=120_000)
            browser.close()
            with contextlib.suppress(Exception):
                rollout.delete(timeout=60)
            with contextlib.suppress(Exception):
                client.CoreV1Api(api_client).delete_namespace(other)
    assert shot.stat().st_size > 10_000
