"""Start the controller: resolve the cluster, wire the handlers, run kopf standalone.

Used by ``canarylab controller``; it blocks until the process is signalled. It must
never be imported by library code that runs in a notebook (it registers handlers in
kopf's default registry when it starts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from canarylab import kube


def run(
    kubeconfig: str | Path | None = None,
    namespaces: Sequence[str] = (),
    metrics_port: int | None = None,
    liveness: str | None = None,
    verbose: bool = False,
) -> None:
    """Run the controller over ``namespaces`` (all namespaces when empty)."""
    _cap_malloc_arenas()
    import kopf

    from canarylab.operator import crds, handlers, metrics
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
    insights = crds.new_insights()
    memo = handlers.memo_for(Cluster(api), insights=insights)
    if metrics_port is not None:
        metrics.serve(metrics_port)
    logging.getLogger("canarylab.controller").info(
        "controller: cluster %s (%s), %s",
        target.kubeconfig or "(service account)",
        target.source,
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
    )
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            liveness_endpoint=liveness,
            memo=memo,
            insights=insights,
        )
    )


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
