"""Pure model of a canary: the spec, observed state, decisions and status.

Everything here is a frozen value or a pure function; nothing imports a Kubernetes
client or touches the network, the clock or the disk. The controller, the rollout
workbench and the replayer all decide with these same functions.
"""

from canarylab.model.decide import Decision, Observed, Status, decide
from canarylab.model.spec import CanarySpec, Match, SpecError, TrafficSplit, parse_spec
from canarylab.model.workload import DeploymentState, rollout_finished

__all__ = [
    "CanarySpec",
    "Decision",
    "DeploymentState",
    "Match",
    "Observed",
    "SpecError",
    "Status",
    "TrafficSplit",
    "decide",
    "parse_spec",
    "rollout_finished",
]
