"""Building the sandbox's binaries from the official Go modules, once per version.

The versions of Kubernetes, etcd and kwok are pinned in exactly one place: the
``go.mod`` files under ``components/``. Each component is built with ``go build``
from its own module (``go install pkg@version`` refuses modules with ``replace``
lines, which Kubernetes needs) into a per-user cache directory whose name carries
the pinned version and a hash of the module files, so a changed pin rebuilds and
an unchanged one never does.

Builds into one cache directory are serialised by a file lock (``.build.lock``,
which names the holder's pid), so two commands never build at once: the second
waits and then finds the binaries built. ``go build`` runs in a process group of
its own; when the build fails or is interrupted (an exception, ^C, SIGTERM or SIGHUP
to the building process) the whole group is killed and waited for and the partial
output removed. A builder that is itself SIGKILLed cannot clean up: its ``go``
gets SIGINT from the kernel (``PR_SET_PDEATHSIG``) and stops, and whatever is left
of its group (a ``compile`` finishing its package) is killed by the next build
before it starts. Go's build cache keeps every package compiled so far, so an
interrupted build resumes where it stopped.

This module never starts what it builds (see ``canarylab.sandbox.core``), and never
signals a process that is not a ``go`` build it started into the same cache directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from canarylab.errors import SandboxError

COMPONENTS_DIR = Path(__file__).parent / "components"
MIN_GO = (1, 24)
"""Oldest Go that builds every pinned component (Kubernetes 1.34 needs 1.24; etcd
3.6.16 and kwok 0.8 declare 1.26, which Go's toolchain switch fetches when older)."""
TESTED_GO = "1.26.8"
BUILD_MARKER = "CANARYLAB_BUILD_CACHE"
"""Environment variable set on every ``go`` this module starts (and so inherited by
its ``compile`` and ``link`` children), naming the cache directory: how the leftovers
of a builder that was SIGKILLed are told apart from every other process."""
STOP_GRACE = 5.0
"""Seconds an interrupted ``go`` gets to stop its tools and remove its work
directory after SIGINT, before its process group is SIGKILLed."""
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Component:
    """One Go module and the commands built from it."""

    name: str
    """Short name: the cache directory's prefix and what progress shows."""
    path: Path
    """The Go module's directory (``components/<name>`` for the sandbox's own)."""
    pinned_module: str
    """The module whose ``require`` version names this component's release."""
    commands: dict[str, str]
    """Binary name to Go package path."""
    ldflags: Callable[[str], list[str]] = field(default=lambda version: [])
    """Extra ``-X`` flags, given the pinned version (so binaries report it)."""

    def version(self) -> str:
        """The release pinned in this component's go.mod."""
        gomod = (self.path / "go.mod").read_text()
        match = re.search(
            rf"^\s*(?:require\s+)?{re.escape(self.pinned_module)}\s+(v\S+)", gomod, re.M
        )
        if not match:
            raise SandboxError(f"{self.path / 'go.mod'} does not pin {self.pinned_module}")
        return match.group(1)

    def label(self) -> str:
        """``name version``, as progress and messages show it."""
        return f"{self.name} {self.version()}"

    def fingerprint(self) -> str:
        """A hash of everything that decides what gets built."""
        digest = hashlib.sha256()
        for file in sorted(self.path.rglob("*")):
            if file.is_file() and (file.suffix == ".go" or file.name in {"go.mod", "go.sum"}):
                digest.update(file.relative_to(self.path).as_posix().encode())
                digest.update(file.read_bytes())
        return digest.hexdigest()[:12]

    def binary_dir(self) -> Path:
        """The cache directory of this component at its pinned version and files."""
        return cache_root() / "bin" / f"{self.name}-{self.version()}-{self.fingerprint()}"

    def binaries(self) -> dict[str, Path]:
        """Binary name to its path in the cache (built or not)."""
        directory = self.binary_dir()
        return {cmd: directory / cmd for cmd in self.commands}

    def is_built(self) -> bool:
        return all(path.exists() for path in self.binaries().values())


def _kube_ldflags(version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


COMPONENTS: dict[str, Component] = {
    "kube": Component(
        name="kube",
        path=COMPONENTS_DIR / "kube",
        pinned_module="k8s.io/kubernetes",
        commands={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kube_ldflags,
    ),
    "etcd": Component(
        name="etcd",
        path=COMPONENTS_DIR / "etcd",
        pinned_module="go.etcd.io/etcd/server/v3",
        commands={"etcd": "./cmd/etcd"},
    ),
    "kwok": Component(
        name="kwok",
        path=COMPONENTS_DIR / "kwok",
        pinned_module="sigs.k8s.io/kwok",
        commands={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        ldflags=lambda version: [f"-X sigs.k8s.io/kwok/pkg/consts.Version={version}"],
    ),
}


GATEWAYS: dict[str, Component] = {
    "traefik": Component(
        name="traefik",
        path=COMPONENTS_DIR / "traefik",
        pinned_module="github.com/traefik/traefik/v3",
        commands={"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
        ldflags=lambda version: [f"-X github.com/traefik/traefik/v3/pkg/version.Version={version}"],
    ),
}
"""Components built on first use, not by ``ensure_built()`` or ``make sandbox-build``:
Traefik's cold build (about 2,100 packages) takes far longer than the control plane's.
``canarylab.sandbox.traefik`` builds it when a real Gateway API gateway is asked for."""


def pinned_versions() -> dict[str, str]:
    """Component name to pinned release, read from the go.mod files."""
    return {name: comp.version() for name, comp in COMPONENTS.items()}


def cache_root() -> Path:
    """Where built binaries live: ``$CANARYLAB_CACHE_DIR`` or the XDG cache."""
    env = os.environ.get("CANARYLAB_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "canarylab"


def find_go() -> tuple[str, tuple[int, int, int]]:
    """The ``go`` command and its version, or a SandboxError saying what to install."""
    go = os.environ.get("CANARYLAB_GO") or shutil.which("go")
    if not go:
        for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go/bin/go")):
            if Path(candidate).exists():
                go = candidate
                break
    if not go:
        raise SandboxError(
            "Go is not installed, and the sandbox builds etcd, Kubernetes and kwok from "
            f"their Go modules. Install Go >= {MIN_GO[0]}.{MIN_GO[1]} (canarylab is tested "
            f"with {TESTED_GO}) from https://go.dev/dl/ or `conda install -c conda-forge go`, "
            "or set CANARYLAB_GO to its path."
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", out.stdout.strip())
    if not match:
        raise SandboxError(f"could not read the version of {go}: {out.stderr.strip()}")
    version = (int(match[1]), int(match[2]), int(match[3] or 0))
    if version[:2] < MIN_GO:
        raise SandboxError(
            f"{go} is Go {'.'.join(map(str, version))}; the sandbox needs Go >= "
            f"{MIN_GO[0]}.{MIN_GO[1]} (tested with {TESTED_GO}). Install a newer Go."
        )
    return go, version


def binary_dir(name: str) -> Path:
    """The cache directory for component ``name`` at its pinned version."""
    return COMPONENTS[name].binary_dir()


def is_built(name: str) -> bool:
    return COMPONENTS[name].is_built()


# ------------------------------------------------------------------ progress
class BuildProgress(Protocol):
    """Where a build reports what it does. The count is of Go packages to compile."""

    def note(self, message: str) -> None:
        """A one-off event: waiting for another build, resolving packages, a component done."""

    def start(self, total: int) -> None:
        """Compiling begins: ``total`` packages across every component to build."""

    def update(self, label: str, completed: int) -> None:
        """``label`` is being built; ``completed`` of the total are compiled so far."""

    def stop(self) -> None:
        """The build ended, done or not."""


class ProgressLines:
    """Progress as a line per tenth of the build, for logs, CI and callbacks.

    A cold build compiles thousands of packages; a line each would bury a CI log.
    """

    def __init__(self, emit: Callable[[str], None], steps: int = 10) -> None:
        self._emit = emit
        self._steps = steps
        self._total = 0
        self._shown = 0
        self._started = time.monotonic()

    def note(self, message: str) -> None:
        self._emit(message)

    def start(self, total: int) -> None:
        self._total, self._shown, self._started = total, 0, time.monotonic()
        self._emit(f"compiling {total} Go packages (a cold build takes minutes, once)")

    def update(self, label: str, completed: int) -> None:
        step = min(self._steps, completed * self._steps // max(self._total, 1))
        if step > self._shown:
            self._shown = step
            self._emit(
                f"{step * 100 // self._steps}% of {self._total} packages "
                f"({label}, {time.monotonic() - self._started:.0f}s)"
            )

    def stop(self) -> None:
        pass


class ProgressBar:
    """A rich progress bar on a terminal: one bar across every component."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("packages"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = self._progress.add_task("building", total=None)

    def note(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total, completed=0)
        self._progress.start()

    def update(self, label: str, completed: int) -> None:
        self._progress.update(self._task, description=f"building {label}", completed=completed)

    def stop(self) -> None:
        self._progress.stop()


def progress_for(console: Console) -> BuildProgress:
    """A bar when ``console`` is a terminal, else a line per tenth of the build."""
    if console.is_terminal:
        return ProgressBar(console)
    return ProgressLines(lambda line: console.print(line, markup=False, highlight=False))


class _Silent:
    def note(self, message: str) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def update(self, label: str, completed: int) -> None:
        pass

    def stop(self) -> None:
        pass


# --------------------------------------------------------------------- build
def ensure_built(
    names: list[str] | None = None, progress: BuildProgress | None = None
) -> dict[str, Path]:
    """Build the sandbox components missing from the cache; return binary name to path."""
    return ensure_components([COMPONENTS[name] for name in names or COMPONENTS], progress)


def ensure_components(
    components: Sequence[Component], progress: BuildProgress | None = None
) -> dict[str, Path]:
    """Build those of ``components`` missing from the cache; return binary name to path.

    Holds the cache's build lock throughout, so a concurrent caller waits and then
    finds the binaries built.
    """
    report = progress or _Silent()
    with _signals_raise(signal.SIGTERM, signal.SIGHUP), _build_lock(report):
        _clear_leftovers(report)
        missing = [comp for comp in components if not comp.is_built()]
        if missing:
            _build_all(missing, report)
    return {cmd: path for comp in components for cmd, path in comp.binaries().items()}


class _Signalled(BaseException):
    """A terminating signal arrived during a build (raised by our handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise(*signums: signal.Signals) -> Iterator[None]:
    """Turn ``signums`` into an exception while the block runs, so the build's cleanup
    runs; afterwards the signal is delivered again to whatever handled it before.

    Python's default for SIGTERM and SIGHUP ends the process without unwinding, which
    would leave ``go build`` running. Signal handlers exist only in the main thread;
    elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_(signum: int, frame: FrameType | None) -> None:
        raise _Signalled(signum)

    previous = {signum: signal.signal(signum, raise_) for signum in signums}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    try:
        yield
    except _Signalled as stopped:
        restore()
        os.kill(os.getpid(), stopped.signum)
        name = signal.Signals(stopped.signum).name
        raise SandboxError(
            f"the sandbox build was stopped by {name}; run the command again to resume it"
        ) from None
    finally:
        restore()


@contextlib.contextmanager
def _build_lock(report: BuildProgress) -> Iterator[None]:
    """The cache directory's build lock; its file names the holder's pid."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            report.note(f"waiting for another sandbox build (pid {holder}) to finish…")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _marker() -> str:
    return str(cache_root().resolve())


def _go_tmp() -> Path:
    return cache_root() / "go-tmp"


def build_processes() -> list[int]:
    """Pids of live processes started by a build into this cache directory: ``go`` and
    its tools, found by the environment variable :data:`BUILD_MARKER` (Linux ``/proc``)."""
    needle = f"{BUILD_MARKER}={_marker()}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or another user's
        if state != "Z":
            found.append(int(entry.name))
    return found


def _clear_leftovers(report: BuildProgress) -> None:
    """Under the lock, any build process of this cache is one whose builder died."""
    leftovers = [pid for pid in build_processes() if pid != os.getpid()]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        report.note(
            f"stopped {len(leftovers)} process(es) left by an earlier build that was killed "
            f"(pids {', '.join(map(str, leftovers))})"
        )
        _wait_gone(lambda: [pid for pid in build_processes() if pid in leftovers])
    shutil.rmtree(_go_tmp(), ignore_errors=True)
    bin_dir = cache_root() / "bin"
    if bin_dir.is_dir():
        for partial in bin_dir.glob(".*-*"):
            shutil.rmtree(partial, ignore_errors=True)


def _wait_gone(alive: Callable[[], list[int]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            raise SandboxError(
                f"build processes {alive()} did not exit after SIGKILL; "
                "stop them by hand and run the command again"
            )
        time.sleep(0.05)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send SIGINT to the child when this thread
    dies (Linux only), so a SIGKILLed builder's ``go`` stops too."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:  # the builder died before prctl took effect
            os._exit(1)

    return preexec


@contextlib.contextmanager
def _go_group(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Run ``argv`` in a process group of its own; on leaving, nothing of it runs."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Not fork-safe in general; this one only calls prctl and getppid.
        preexec_fn=_die_with_parent(),
    )
    try:
        yield proc
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT the group (go stops its tools and removes its work directory), SIGKILL
    it after :data:`STOP_GRACE`, then wait until no process of it is left."""
    if proc.poll() is None:
        # go still runs, so its pid is still this group's id: signalling it is safe.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def group() -> list[int]:
        return [pid for pid in build_processes() if _pgid(pid) == proc.pid]

    for pid in group():  # tools that outlived go: marked, so ours
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(group)
    if proc.stdout:
        proc.stdout.close()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _is_package_line(line: str) -> bool:
    """``go build -v`` and ``go list`` print one import path per line; errors and
    ``go: downloading …`` lines have spaces."""
    return bool(line) and " " not in line


def _go_env() -> dict[str, str]:
    env = {**os.environ, "CGO_ENABLED": "0", BUILD_MARKER: _marker()}
    if "GOTMPDIR" not in os.environ:
        # go's work directories go where the next build clears them, even after a SIGKILL.
        _go_tmp().mkdir(parents=True, exist_ok=True)
        env["GOTMPDIR"] = str(_go_tmp())
    return env


def _build_all(components: list[Component], report: BuildProgress) -> None:
    go, _ = find_go()
    env = _go_env()
    planned: list[int] = []
    for comp in components:
        report.note(f"resolving the packages of {comp.label()} (go list -deps)…")
        planned.append(_packages_to_compile(go, comp, env))
    report.start(sum(planned))
    done = 0
    try:
        for comp, count in zip(components, planned, strict=True):
            started = time.monotonic()
            _build(go, comp, env, report, done)
            done += count
            report.update(comp.label(), done)
            report.note(
                f"{comp.label()}: built in {time.monotonic() - started:.0f}s -> {comp.binary_dir()}"
            )
    finally:
        report.stop()


def _packages_to_compile(go: str, comp: Component, env: dict[str, str]) -> int:
    """How many packages ``go build`` will compile: those ``go list -deps`` reports as
    stale (not in Go's build cache), standard library included."""
    argv = [go, "list", "-deps", "-trimpath", "-f", "{{if .Stale}}{{.ImportPath}}{{end}}"]
    with _go_group([*argv, *comp.commands.values()], comp.path, env) as proc:
        assert proc.stdout is not None
        lines = proc.stdout.read().splitlines()
        code = proc.wait()
    if code != 0:
        tail = "\n".join(lines[-25:])
        raise SandboxError(
            f"listing the packages of {comp.label()} in {comp.path} failed (go list exit "
            f"{code}):\n{tail}\nCheck that the Go module proxy is reachable (GOPROXY)."
        )
    return sum(1 for line in lines if _is_package_line(line))


def _build(go: str, comp: Component, env: dict[str, str], report: BuildProgress, done: int) -> None:
    """``go build`` ``comp`` into the cache; ``done`` packages were compiled before it."""
    target = comp.binary_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{comp.name}-", dir=target.parent))
    try:
        version = comp.version()
        ldflags = " ".join(["-s", "-w", *comp.ldflags(version)])
        argv = [go, "build", "-v", "-trimpath", f"-ldflags={ldflags}", "-o", f"{tmp}/"]
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=25)
        count = 0
        with _go_group([*argv, *comp.commands.values()], comp.path, env) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                tail.append(line)
                if _is_package_line(line):
                    count += 1
                    report.update(comp.label(), done + count)
            code = proc.wait()
        if code != 0:
            raise SandboxError(
                f"building {comp.label()} from {comp.path} failed (go build exit {code}):\n"
                + "\n".join(tail)
                + "\nCheck that the Go module proxy is reachable (GOPROXY) and that Go "
                "is recent enough."
            )
        (tmp / "BUILD_INFO").write_text(
            f"component={comp.name}\nversion={version}\nseconds={time.monotonic() - started:.1f}\n"
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """``python -m canarylab.sandbox.build``: build (or confirm) every component."""
    started = time.monotonic()
    console = Console()
    components = list(COMPONENTS.values())
    cached = {comp.name for comp in components if comp.is_built()}
    try:
        ensure_components(components, progress_for(console))
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted; the next build resumes from Go's build cache", file=sys.stderr)
        raise SystemExit(130) from None
    for comp in components:
        how = "cached" if comp.name in cached else "built"
        print(f"{comp.label()}: {how} -> {comp.binary_dir()}")
    print(f"all components ready in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
