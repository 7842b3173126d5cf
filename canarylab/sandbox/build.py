"""Building the sandbox's binaries from the official Go modules, once per version.

The versions of Kubernetes, etcd and kwok are pinned in exactly one place: the
``go.mod`` files under ``components/``. Each component is built with ``go build``
from its own module (``go install pkg@version`` refuses modules with ``replace``
lines, which Kubernetes needs) into a per-user cache directory whose name carries
the pinned version and a hash of the module files, so a changed pin rebuilds and
an unchanged one never does.

This module never starts what it builds; see ``canarylab.sandbox.core``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from canarylab.errors import SandboxError

COMPONENTS_DIR = Path(__file__).parent / "components"
MIN_GO = (1, 24)
"""Oldest Go that builds every pinned component (Kubernetes 1.34 needs 1.24; etcd
3.6.16 and kwok 0.8 declare 1.26, which Go's toolchain switch fetches when older)."""
TESTED_GO = "1.26.8"


@dataclass(frozen=True)
class Component:
    """One Go module under ``components/`` and the commands built from it."""

    module_dir: str
    """Directory name under ``components/``."""
    pinned_module: str
    """The module whose ``require`` version names this component's release."""
    commands: dict[str, str]
    """Binary name to Go package path."""
    ldflags: Callable[[str], list[str]] = field(default=lambda version: [])
    """Extra ``-X`` flags, given the pinned version (so binaries report it)."""

    @property
    def path(self) -> Path:
        return COMPONENTS_DIR / self.module_dir

    def version(self) -> str:
        """The release pinned in this component's go.mod."""
        gomod = (self.path / "go.mod").read_text()
        match = re.search(
            rf"^\s*(?:require\s+)?{re.escape(self.pinned_module)}\s+(v\S+)", gomod, re.M
        )
        if not match:
            raise SandboxError(f"{self.path / 'go.mod'} does not pin {self.pinned_module}")
        return match.group(1)

    def fingerprint(self) -> str:
        """A hash of everything that decides what gets built."""
        digest = hashlib.sha256()
        for file in sorted(self.path.rglob("*")):
            if file.is_file() and (file.suffix == ".go" or file.name in {"go.mod", "go.sum"}):
                digest.update(file.relative_to(self.path).as_posix().encode())
                digest.update(file.read_bytes())
        return digest.hexdigest()[:12]


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
        module_dir="kube",
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
        module_dir="etcd",
        pinned_module="go.etcd.io/etcd/server/v3",
        commands={"etcd": "./cmd/etcd"},
    ),
    "kwok": Component(
        module_dir="kwok",
        pinned_module="sigs.k8s.io/kwok",
        commands={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        ldflags=lambda version: [f"-X sigs.k8s.io/kwok/pkg/consts.Version={version}"],
    ),
}


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
    comp = COMPONENTS[name]
    return cache_root() / "bin" / f"{name}-{comp.version()}-{comp.fingerprint()}"


def is_built(name: str) -> bool:
    directory = binary_dir(name)
    return all((directory / cmd).exists() for cmd in COMPONENTS[name].commands)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_built(
    names: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Build what is missing from the cache; return binary name to path.

    ``progress`` receives one line per compiled Go package (from ``go build -v``),
    so callers can show that a long cold build is moving.
    """
    names = names or list(COMPONENTS)
    paths: dict[str, Path] = {}
    with _build_lock():
        for name in names:
            if not is_built(name):
                _build(name, progress)
            directory = binary_dir(name)
            for cmd in COMPONENTS[name].commands:
                paths[cmd] = directory / cmd
    return paths


def _build(name: str, progress: Callable[[str], None] | None) -> None:
    comp = COMPONENTS[name]
    go, _ = find_go()
    target = binary_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    env = {**os.environ, "CGO_ENABLED": "0"}
    version = comp.version()
    ldflags = " ".join(["-s", "-w", *comp.ldflags(version)])
    argv = [go, "build", "-v", "-trimpath", f"-ldflags={ldflags}", "-o", str(tmp) + "/"]
    argv += list(comp.commands.values())
    started = time.monotonic()
    log_lines: list[str] = []
    proc = subprocess.Popen(
        argv, cwd=comp.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        log_lines.append(line.rstrip())
        if progress:
            progress(f"{name} {version}: {line.strip()}")
    if proc.wait() != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(log_lines[-25:])
        raise SandboxError(
            f"building {name} {version} from {comp.path} failed (go build exit "
            f"{proc.returncode}):\n{tail}\nCheck that the Go module proxy is reachable "
            "(GOPROXY) and that Go is recent enough."
        )
    (tmp / "BUILD_INFO").write_text(
        f"component={name}\nversion={version}\nseconds={time.monotonic() - started:.1f}\n"
    )
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def main() -> None:
    """``python -m canarylab.sandbox.build``: build (or confirm) every component."""
    started = time.monotonic()
    count = 0

    def progress(line: str) -> None:
        nonlocal count
        count += 1
        if count % 200 == 0:
            print(f"  … {count} packages compiled ({time.monotonic() - started:.0f}s)", flush=True)

    for name in COMPONENTS:
        t0 = time.monotonic()
        cached = is_built(name)
        ensure_built([name], progress)
        how = "cached" if cached else "built"
        print(
            f"{name} {COMPONENTS[name].version()}: {how} in {time.monotonic() - t0:.1f}s -> {binary_dir(name)}"
        )
    print(f"all components ready in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
