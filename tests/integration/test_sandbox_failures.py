"""The sandbox fails with messages that say what to do, and never hangs."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from canarylab.errors import SandboxError
from canarylab.sandbox import Sandbox, build

pytestmark = pytest.mark.integration


def test_missing_go_names_the_version_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CANARYLAB_GO", raising=False)
    monkeypatch.setattr(build.Path, "exists", lambda self: False)
    with pytest.raises(SandboxError, match=r"Go is not installed.*Go >= 1\.24"):
        build.find_go()


def test_taken_port_is_refused_at_once(monkeypatch, tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("CANARYLAB_SANDBOX_PORT", str(port))
        started = time.monotonic()
        with pytest.raises(SandboxError, match=f"port {port}.*already in use"):
            Sandbox(tmp_path / "sb").up()
        assert time.monotonic() - started < 5
    assert Sandbox(tmp_path / "sb").status()["components"] == []


def test_component_that_exits_is_named_with_its_log(tmp_path: Path):
    state = tmp_path / "sb"
    state.mkdir()
    (state / "etcd").write_text("not a directory")  # etcd cannot use this as its data dir
    with pytest.raises(SandboxError) as err:
        Sandbox(state).up()
    message = str(err.value)
    assert "etcd exited during start-up" in message
    assert "etcd.log" in message
    assert Sandbox(state).status()["components"] == []


def test_partly_running_sandbox_is_reported_and_recoverable(tmp_path: Path):
    sb = Sandbox(tmp_path / "sb", nodes=1)
    sb.up()
    try:
        kwok = next(p for p in sb.state().processes if p.name == "kwok")
        os.kill(kwok.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while kwok.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(SandboxError, match="only partly running: kwok exited"):
            Sandbox(tmp_path / "sb").up()
    finally:
        sb.down()
    # After down, the same state directory starts cleanly (PKI and etcd data reused).
    again = Sandbox(tmp_path / "sb", nodes=1)
    again.up()
    try:
        assert again.is_running()
    finally:
        again.down()


def test_up_is_idempotent(sandbox):
    before = [(p.name, p.pid) for p in sandbox.state().processes]
    Sandbox(sandbox.state_dir).up()
    assert [(p.name, p.pid) for p in sandbox.state().processes] == before
