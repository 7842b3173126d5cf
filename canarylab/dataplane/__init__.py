"""The sandbox's HTTP data plane: demo app, workload runner and HAProxy gateway.

kwok pods are not real, so the sandbox runs real demo-app processes for demo-app
Deployments and a real HAProxy in front of them, programmed from ``ApisixRoute`` and
``HTTPRoute`` objects. It is the sandbox's stand-in for APISIX (docs/dataplane.md).

This package belongs to the sandbox layer: it must never import the operator, the
routers or anything above them.
"""
