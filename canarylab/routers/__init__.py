"""Traffic routers: how a canary's weights and match rules land on a route.

See ``base`` for the contract and ``registry`` for how routers are found.
"""
