"""Start the controller: resolve the cluster, wire the handlers, run kopf standalone.

Used by ``canarylab controller``; it blocks until the process is signalled. It must
never be imported by library code that runs in a notebook (it registers handlers in
kopf's default registry when it starts).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from canarylab import kube


def run(
    kubeconfig: str | Path | None = None,
    namespaces: Sequence[str] = (),
    metrics_port: int | None = None,
    liveness: str | None = None,
    verbose: bool = False,
    selector: Mapping[str, str] | None = None,
) -> None:
    """Run the controller over ``namespaces`` (all namespaces when empty).

    ``selector``: serve only the CanaryDeployments carrying these labels (one shard of
    several controllers; docs/operations.md, Sharding).
    """
    _cap_malloc_arenas()
    import kopf

    from canarylab.operator import crds, handlers, metrics, readiness
    from canarylab.operator.cluster import Cluster

    target = kube.resolve(kubeconfig)
    # kopf logs in through handlers._login, from the client built here (kubeconfig or
    # in-cluster service account alike).
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    api = kube.api_client(target.kubeconfig, target.context)
    # one connection per worker (and the Event posters), so passes do not queue on the pool
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = handlers.WORKERS + 4
    readiness.install()  # start-up with thousands of watched objects: see its docstring
    insights = crds.new_insights()
    memo = handlers.memo_for(Cluster(api), insights=insights, selector=selector)
    if metrics_port is not None:
        metrics.serve(metrics_port)
    logging.getLogger("canarylab.controller").info(
        "controller: cluster %s (%s), %s%s",
        target.kubeconfig or "(service account)",
        target.source,
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
        f", CanaryDeployments labelled {_selector_text(selector)}" if selector else "",
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(
            kopf.operator(
                standalone=True,
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                liveness_endpoint=liveness,
                memo=memo,
                insights=insights,
            )
        )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when it is installed (as ``kopf run`` does), else asyncio's own loop.

    kopf handles every watch event in its own tasks, so the loop's per-callback cost is
    much of the controller's CPU across thousands of watched objects; uvloop cuts it.
    ``CANARYLAB_CONTROLLER_LOOP=asyncio`` rules uvloop out (to compare, or to suspect it).
    """
    if os.environ.get("CANARYLAB_CONTROLLER_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _cap_malloc_arenas(arenas: int = 2) -> None:
    """Bound glibc's per-thread malloc arenas before the pass threads start.

    Every reconcile thread would otherwise get its own arena, and freed memory stays
    fragmented across them: resident memory grows with the thread count, not the load.
    A no-op where glibc's ``mallopt`` is not available.
    """
    import ctypes
    import ctypes.util

    m_arena_max = -8
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_arena_max, arenas)
    except (OSError, AttributeError):
        pass
