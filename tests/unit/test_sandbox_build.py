"""The sandbox build's guarantees, on a tiny real Go module built into ``tmp_path``.

Each test builds a hello-world module (with a local ``replace``, like the Kubernetes
component) into its own cache and a cold Go build cache, so ``compile`` processes
really run while a builder is interrupted. Nothing here touches ``~/.cache``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from canarylab.sandbox import build

FILES = {
    "go.mod": "module example.com/hello\n\ngo 1.24\n\nrequire example.com/greeting v0.1.0\n\n"
    "replace example.com/greeting => ./greeting\n",
    "greeting/go.mod": "module example.com/greeting\n\ngo 1.24\n",
    "greeting/greeting.go": 'package greeting\n\nimport "fmt"\n\n'
    'func Hello(who string) string { return fmt.Sprintf("hello, %s", who) }\n',
    "cmd/hello/main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greeting"\n)\n\n'
    'func main() { fmt.Println(greeting.Hello("world")) }\n',
}
BUILDER = """
import sys
from pathlib import Path
from canarylab.sandbox.build import Component, ProgressLines, ensure_components
hello = Component(name="hello", path=Path(sys.argv[1]), pinned_module="example.com/greeting",
                  commands={"hello": "./cmd/hello"})
paths = ensure_components([hello], ProgressLines(lambda line: print(line, flush=True)))
print("ready", paths["hello"], flush=True)
"""


class Recorder:
    """A BuildProgress that keeps what it was told."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.total: int | None = None
        self.updates: list[int] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def start(self, total: int) -> None:
        self.total = total

    def update(self, label: str, completed: int) -> None:
        self.updates.append(completed)

    def stop(self) -> None:
        pass


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hello"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setenv("CANARYLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GOCACHE", str(tmp_path / "gocache"))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOTOOLCHAIN", "local")
    return root


def hello(module: Path) -> build.Component:
    return build.Component(
        name="hello",
        path=module,
        pinned_module="example.com/greeting",
        commands={"hello": "./cmd/hello"},
    )


def processes_of(tmp_path: Path) -> list[str]:
    """Live processes whose cwd, command line or environment points into ``tmp_path``."""
    needle = str(tmp_path).encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            hits = needle in cmdline or needle in (entry / "environ").read_bytes()
            hits = hits or os.readlink(entry / "cwd").startswith(str(tmp_path))
        except OSError:
            continue
        if hits:
            shown = cmdline.replace(b"\0", b" ")[:120].decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_builder(module: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(module)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def compiling(tmp_path: Path) -> bool:
    return any("/compile " in p for p in processes_of(tmp_path))


def assert_builds_cleanly(module: Path) -> None:
    component = hello(module)
    paths = build.ensure_components([component])
    out = subprocess.run([paths["hello"]], capture_output=True, text=True, check=True)
    assert out.stdout == "hello, world\n"
    assert not list((component.binary_dir().parent).glob(".hello-*")), "partial output left"


def test_builds_once_with_an_honest_package_count(module: Path) -> None:
    component = hello(module)
    first = Recorder()
    build.ensure_components([component], first)
    assert first.total is not None
    assert first.total > 20  # the standard library, cold
    # go build -v compiled exactly the packages go list -deps called stale.
    assert first.updates[-2] == first.total == first.updates[-1]
    info = (component.binary_dir() / "BUILD_INFO").read_text()

    again = Recorder()
    paths = build.ensure_components([component], again)
    assert again.total is None, "a cached component was rebuilt"
    assert not again.updates
    assert (component.binary_dir() / "BUILD_INFO").read_text() == info
    out = subprocess.run([paths["hello"]], capture_output=True, text=True, check=True)
    assert out.stdout == "hello, world\n"


def test_progress_lines_print_a_line_per_tenth() -> None:
    lines: list[str] = []
    progress = build.ProgressLines(lines.append)
    progress.start(2000)
    for done in range(1, 2001):
        progress.update("kube v1.34.4", done)
    assert len(lines) == 11
    assert lines[-1].startswith("100% of 2000 packages (kube v1.34.4")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_an_interrupted_build_leaves_no_process_and_resumes(
    module: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    builder = start_builder(module)
    wait_for(lambda: compiling(tmp_path), "go build to run compile")
    builder.send_signal(signum)
    builder.wait(timeout=60)
    assert builder.returncode == -signum, builder.stdout.read() if builder.stdout else ""
    assert processes_of(tmp_path) == []
    assert_builds_cleanly(module)


def test_a_sigkilled_builder_takes_go_with_it_and_the_next_build_clears_the_rest(
    module: Path, tmp_path: Path
) -> None:
    builder = start_builder(module)
    wait_for(lambda: compiling(tmp_path), "go build to run compile")
    builder.kill()
    builder.wait(timeout=10)
    # go gets SIGINT from the kernel (PDEATHSIG) and stops; a compile it ran may
    # still finish its package, and the next build kills whatever is left.
    wait_for(lambda: not any(" build -v " in p for p in processes_of(tmp_path)), "go to stop", 60)
    assert_builds_cleanly(module)
    assert processes_of(tmp_path) == []


def test_the_next_build_stops_processes_a_killed_build_left(module: Path, tmp_path: Path) -> None:
    # What a SIGKILLed build can leave: a tool carrying the build's marker, in its own group.
    marker = {build.BUILD_MARKER: str((tmp_path / "cache").resolve())}
    leftover = subprocess.Popen(
        ["sleep", "600"], env={**os.environ, **marker}, start_new_session=True
    )
    notes = Recorder()
    build.ensure_components([hello(module)], notes)
    assert leftover.wait(timeout=10) == -signal.SIGKILL
    assert any(f"pids {leftover.pid}" in note for note in notes.notes), notes.notes


def test_a_second_command_waits_for_the_running_build(module: Path, tmp_path: Path) -> None:
    first = start_builder(module)
    lock = tmp_path / "cache" / ".build.lock"
    wait_for(lambda: compiling(tmp_path), "the first build to compile")
    assert lock.read_text().strip() == str(first.pid)
    second = start_builder(module)
    out_second, _ = second.communicate(timeout=120)
    out_first, _ = first.communicate(timeout=120)
    assert first.returncode == 0 == second.returncode, out_first + out_second
    assert f"waiting for another sandbox build (pid {first.pid})" in out_second
    assert "compiling" in out_first
    assert "compiling" not in out_second, "the second command built again"
    assert out_first.splitlines()[-1] == out_second.splitlines()[-1]  # ready <same path>
