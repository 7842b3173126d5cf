"""Where canarylab connects: the one place that turns "which cluster" into a client.

Resolution order, the same for the CLI, notebooks, runbooks and the controller, and
the same as kubectl's:

1. an explicit kubeconfig (``--kubeconfig``), which may itself be a list;
2. else every path in ``$KUBECONFIG``, merged the way kubectl merges them (the first
   file that sets a value wins; missing files are skipped, but not all of them);
3. else ``~/.kube/config``;
4. else the pod's service account when running inside a cluster;
5. else a running local cluster (the sandbox) found through the
   ``canarylab.local_clusters`` entry points.

``--context`` picks a context of the merged kubeconfig (default: its
``current-context``); the namespace defaults to that context's namespace, then
``default``. The result, a :class:`Target`, also says where probe traffic goes
(:meth:`Target.probe_target`): the URL the user gives, else the sandbox's gateway (with
the Host header that addresses the route there) when the kubeconfig belongs to a
sandbox. Every entry point takes its probe target from here. A missing target is an error that says how to get one, never a silent
fall-back to some other cluster.

This module must never import the sandbox (it finds local clusters through entry
points) nor anything above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canarylab.errors import CanarylabError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

LOCAL_CLUSTERS = "canarylab.local_clusters"
"""Entry-point group of local-cluster finders: ``find(kubeconfig) -> LocalCluster | None``."""

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
SERVICE_ACCOUNT_NAMESPACE = SERVICE_ACCOUNT_TOKEN.with_name("namespace")


class NoClusterError(CanarylabError):
    """No kubeconfig, no service account and no running local cluster was found."""


@dataclass(frozen=True)
class LocalCluster:
    """What a local-cluster finder reports: its admin kubeconfig and its gateway."""

    name: str
    """What it is (``sandbox``); becomes :attr:`Target.source`."""
    kubeconfig: Path
    gateway: str | None
    """Base URL of the cluster's HTTP gateway, where probe traffic goes."""
    route_host: Callable[[str, str], str] | None = field(default=None, compare=False)
    """``route_host(route, namespace)``: the Host header that addresses a route at the
    gateway (the local cluster's own naming; None: the user names the host)."""
    prometheus: str | None = None
    """Base URL of the cluster's Prometheus, when it runs one (metric evidence)."""


@dataclass(frozen=True)
class ProbeTarget:
    """Where probe traffic goes: a URL and the request headers to send with it."""

    url: str
    headers: Mapping[str, str]
    """Request headers, ``Host`` included when the gateway routes on it."""


Finder = Callable[[Path | None], LocalCluster | None]
"""``find(None)``: the running local cluster, if any; ``find(path)``: the local cluster
whose admin kubeconfig ``path`` is, if any. Cheap, and never starts anything."""


@dataclass(frozen=True)
class Target:
    """A resolved cluster: which kubeconfig and context, which namespace, where to probe."""

    kubeconfigs: tuple[Path, ...]
    """The kubeconfig files, merged in this order; empty for ``in-cluster``."""
    context: str | None
    """The context in use (the merged file's current-context when none was asked for)."""
    namespace: str
    """The context's namespace, else ``default``."""
    source: str
    """``argument``, ``KUBECONFIG``, ``~/.kube/config``, ``in-cluster``, or the name of
    the local cluster found (``sandbox``)."""
    gateway: str | None = None
    """The local cluster's gateway URL, when the kubeconfig belongs to one."""
    route_host: Callable[[str, str], str] | None = field(default=None, compare=False)
    """How that gateway addresses a route (:attr:`LocalCluster.route_host`)."""
    prometheus: str | None = None
    """The local cluster's Prometheus URL, when the kubeconfig belongs to one that runs it."""

    @property
    def kubeconfig(self) -> Path | None:
        """The first kubeconfig file (the one a single-file consumer reads), if any."""
        return self.kubeconfigs[0] if self.kubeconfigs else None

    @property
    def kubeconfig_env(self) -> str | None:
        """The kubeconfigs as one ``KUBECONFIG`` value, for child processes."""
        return os.pathsep.join(map(str, self.kubeconfigs)) if self.kubeconfigs else None

    def api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for this target (a new one per call)."""
        from kubernetes import client, config

        if not self.kubeconfigs:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        # The client's loader merges a pathsep-joined list exactly like KUBECONFIG.
        return config.new_client_from_config(config_file=self.kubeconfig_env, context=self.context)

    def probe_target(
        self,
        given: str | None = None,
        *,
        route: str | None = None,
        namespace: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProbeTarget:
        """Where probe traffic for ``route`` goes: the URL the user gave (with only the
        headers given), else this cluster's gateway, with the Host header that addresses
        ``route`` in ``namespace`` (default: the context's) unless ``headers`` names one.
        """
        sent = dict(headers or {})
        if given:
            return ProbeTarget(given, sent)
        if not self.gateway:
            raise NoClusterError(
                f"no probe target: {self.describe()} has no gateway canarylab knows of; pass "
                "the URL of the gateway that serves the route (probe_target=… or --target)"
            )
        has_host = any(name.lower() == "host" for name in sent)
        if route and self.route_host is not None and not has_host:
            sent["Host"] = self.route_host(route, namespace or self.namespace)
        return ProbeTarget(self.gateway.rstrip("/") + "/", sent)

    def describe(self) -> str:
        """One line for logs and errors: where it came from, files, context, namespace."""
        where = ", ".join(map(str, self.kubeconfigs)) or "the pod's service account"
        context = f" context {self.context}" if self.context else ""
        return f"{self.source} ({where}{context}, namespace {self.namespace})"


def resolve(
    kubeconfig: str | Path | Sequence[str | Path] | None = None,
    context: str | None = None,
    *,
    finders: Sequence[Finder] | None = None,
) -> Target:
    """Decide which cluster to talk to; see the module docstring for the order.

    ``kubeconfig`` may be one path, a ``KUBECONFIG``-style list or a sequence of paths.
    ``finders`` replaces the entry-point lookup of local clusters (``None``: use them;
    they are loaded only when a kubeconfig is to be matched or nothing else was found).
    """

    def local() -> Sequence[Finder]:
        return finders if finders is not None else _entry_point_finders()

    if kubeconfig:
        paths = _paths(kubeconfig)
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise NoClusterError(f"kubeconfig {', '.join(map(str, missing))} does not exist")
        return _from_files(paths, context, "argument", local)
    env = os.environ.get("KUBECONFIG")
    if env:
        listed = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        present = [p for p in listed if p.exists()]
        if not present:
            raise NoClusterError(
                f"KUBECONFIG points at {', '.join(map(str, listed))}, which does not exist; "
                "fix KUBECONFIG or unset it"
            )
        return _from_files(present, context, "KUBECONFIG", local)
    home = Path.home() / ".kube" / "config"
    if home.exists():
        return _from_files([home], context, "~/.kube/config", local)
    if _in_cluster():
        if context:
            raise NoClusterError(
                f"--context {context} needs a kubeconfig, and none was found "
                "(running in-cluster with the pod's service account)"
            )
        namespace = (
            SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            if SERVICE_ACCOUNT_NAMESPACE.exists()
            else "default"
        )
        return Target((), None, namespace or "default", "in-cluster")
    for find in local():
        found = find(None)
        if found is not None and found.kubeconfig.exists():
            target = _from_files([found.kubeconfig], context, found.name, lambda: ())
            return Target(
                target.kubeconfigs,
                target.context,
                target.namespace,
                found.name,
                found.gateway,
                found.route_host,
                found.prometheus,
            )
    raise NoClusterError(
        "no cluster given and no sandbox running: run `canarylab sandbox up` "
        "(or `make demo`), or set KUBECONFIG (or pass --kubeconfig) to use an existing cluster"
    )


def api_client(
    kubeconfig: str | Path | Sequence[str | Path] | None = None, context: str | None = None
) -> ApiClient:
    """A ``kubernetes.client.ApiClient`` for the resolved target."""
    return resolve(kubeconfig, context).api_client()


def merged_config(paths: Sequence[Path]) -> dict[str, Any]:
    """The kubeconfigs merged as kubectl merges them: first file wins, lists by name."""
    import yaml

    merged: dict[str, Any] = {}
    named: dict[str, dict[str, Any]] = {"clusters": {}, "contexts": {}, "users": {}}
    for path in paths:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise NoClusterError(f"kubeconfig {path} is not a mapping")
        for key, value in raw.items():
            if key in named:
                for item in value or ():
                    if isinstance(item, dict) and "name" in item:
                        named[key].setdefault(str(item["name"]), item)
            elif merged.get(key) in (None, ""):  # kubectl: the first non-empty value wins
                merged[key] = value
    for key, items in named.items():
        merged[key] = list(items.values())
    return merged


def _from_files(
    paths: Sequence[Path],
    context: str | None,
    source: str,
    finders: Callable[[], Sequence[Finder]],
) -> Target:
    merged = merged_config(paths)
    contexts = {str(c["name"]): c.get("context") or {} for c in merged["contexts"]}
    chosen = context or merged.get("current-context") or None
    if chosen is not None and chosen not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise NoClusterError(
            f"context {chosen!r} is not in {', '.join(map(str, paths))} (contexts: {known})"
        )
    namespace = str((contexts.get(chosen or "") or {}).get("namespace") or "default")
    for find in finders():
        found = find(paths[0])
        if found is not None:
            return Target(
                tuple(paths),
                chosen,
                namespace,
                source,
                found.gateway,
                found.route_host,
                found.prometheus,
            )
    return Target(tuple(paths), chosen, namespace, source)


def _paths(kubeconfig: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(kubeconfig, str | Path):
        parts: Sequence[str | Path] = str(kubeconfig).split(os.pathsep)
    else:
        parts = kubeconfig
    return [Path(p).expanduser() for p in parts if str(p)]


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()


def _entry_point_finders() -> list[Finder]:
    finders: list[Finder] = []
    for ep in sorted(entry_points(group=LOCAL_CLUSTERS), key=lambda e: e.name):
        try:
            finders.append(ep.load())
        except Exception as err:  # a broken plugin must not break cluster resolution
            import logging

            logging.getLogger(__name__).warning("local-cluster finder %s failed: %s", ep.name, err)
    return finders
