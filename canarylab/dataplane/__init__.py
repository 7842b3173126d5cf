"""The sandbox's HTTP data plane: demo app, workload runner and HAProxy gateway.

kwok pods are not real, so the sandbox runs a real demo-app process for every demo-app
Pod (and makes the Pod Ready when that process serves) and a real HAProxy in front of
them, programmed from ``ApisixRoute`` and ``HTTPRoute`` objects. It is the sandbox's
stand-in for APISIX (docs/dataplane.md).

This package is the layer below ``canarylab.sandbox``, which starts it
(``canarylab.sandbox.gateway``): it must never import the sandbox, the operator, the
routers or anything above them.
"""
