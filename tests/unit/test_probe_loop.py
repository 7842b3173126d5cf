"""The probe's event loop: uvloop when installed, asyncio's otherwise, never required."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from canarylab.probe import Probe, ProbeSettings
from canarylab.probe import loop as probe_loop

RESPONSE = b"HTTP/1.1 200 OK\r\nX-Canarylab-Version: v2\r\nContent-Length: 2\r\n\r\nok"


def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, package)

    monkeypatch.setattr(probe_loop.importlib, "import_module", fake)


def test_asyncio_is_the_fallback_when_uvloop_is_missing(monkeypatch):
    monkeypatch.delenv(probe_loop.ENV, raising=False)
    without_uvloop(monkeypatch)
    name, factory = probe_loop.loop_factory()
    assert name == "asyncio"
    loop = factory()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_asking_for_a_missing_uvloop_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv(probe_loop.ENV, "uvloop")
    without_uvloop(monkeypatch)
    with pytest.raises(RuntimeError, match="pip install uvloop"):
        probe_loop.loop_factory()


def test_the_environment_can_rule_uvloop_out(monkeypatch):
    monkeypatch.setenv(probe_loop.ENV, "asyncio")
    assert probe_loop.loop_factory()[0] == "asyncio"


def test_an_unknown_loop_name_is_refused(monkeypatch):
    monkeypatch.setenv(probe_loop.ENV, "trio")
    with pytest.raises(ValueError, match="uvloop or asyncio"):
        probe_loop.loop_factory()


def test_uvloop_is_preferred_when_installed(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.delenv(probe_loop.ENV, raising=False)
    assert probe_loop.loop_factory()[0] == "uvloop"


async def probe_a_scripted_server(requests: int) -> tuple[str, dict[str, int]]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        settings = ProbeSettings(
            url=f"http://127.0.0.1:{port}/", max_requests=requests, connections=2, timeout=30
        )
        result = await Probe(settings).run()
    return type(asyncio.get_running_loop()).__module__, result.summary()["by_version"]


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_the_probe_runs_the_same_on_either_loop(name):
    if name == "uvloop":
        pytest.importorskip("uvloop")
    module, by_version = probe_loop.run(probe_a_scripted_server(50), name=name)
    assert module.split(".")[0] == name
    assert by_version == {"v2": 50}
