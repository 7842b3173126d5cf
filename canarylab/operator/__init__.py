"""The CanaryDeployment controller: kopf handlers, reconcile passes, metrics.

I/O lives here; decisions come from ``canarylab.model`` and route edits from
``canarylab.routers``. Start it with ``canarylab controller`` (see ``run``).
"""
