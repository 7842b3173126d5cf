# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Canary rollout runbook
#
# Creates a canary of `parent` at `version`, waits until it is ready, walks the `steps`
# (weight, then `hold` seconds while the `gates` judge the probe's traffic since the step
# began), replaces the parent with the canary, waits for the parent's rollout and deletes the
# canary. A step passes only when every gate passed: a gate still collecting evidence extends
# the hold up to `max_hold`, then fails the step (`InsufficientEvidence`) unless
# `on_insufficient = "pass"`. A failing gate, missing evidence, a dead probe or SIGTERM rolls
# back (weight 0, canary deleted) and then fails this notebook with the reason and numbers;
# `canarylab run` exits 2 (rolled back, safe) or 3 (rollback failed: look now).
#
# While it runs, the notebook holds a `lease` on the CanaryDeployment: if this process dies,
# the controller sets the canary's weight to 0 after `lease` seconds (`Paused`/`DriverLost`).
#
# Re-running with the same parameters after an interruption picks up from the
# CanaryDeployment's status. Everything is recorded in `<output_dir>/record`
# (see docs/record.md). Run it with `canarylab run canary-rollout -p name value …` or plain
# `papermill -k python3`.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell)
namespace = "default"
parent = "hello"  # the parent Deployment
name = None  # the CanaryDeployment's name (default: the parent's)
image = "canarylab/demo:v2"
version = "v2"  # what the probe's classifier reports for the canary
replicas = 2
canary_env = {}  # extra env for the canary container, e.g. {"DEMO_ERROR_RATE": "0.2"}
router = "apisix"  # or "gatewayAPI"
route = None  # ApisixRoute / HTTPRoute name (default: the parent's)
steps = [5, 25, 50, 100]  # weights; or [{"weight": 5, "hold": 60, "gates": {...}}, ...]
hold = 30  # seconds per step
max_hold = None  # longest hold while gates still collect (None: max(4 x hold, hold + 60))
on_insufficient = "fail"  # or "pass": a step still collecting at max_hold passes anyway
gates = {  # anytime-valid; alpha is split over steps x gates (docs/runbooks.md)
    "traffic_share": {"tolerance": 0.5},  # fail (NoCanaryTraffic) below half its weight
    "max_error_rate": {"limit": 0.05, "min_requests": 50},
    "error_rate_comparison": {"min_difference": 0.005, "min_requests": 100},
    "latency_comparison": {"max_ratio": 1.2, "min_requests": 100},
}
alpha = 0.01  # the whole rollout's false-alarm probability (all steps, all gates)
evidence = "probe"  # or "metrics" (the gateway's, from Prometheus; no probe) or "both"
prometheus = None  # Prometheus URL for metric gates; None means the sandbox's
metric_templates = {}  # your PromQL by name: {"requests": ..., "failures": ...} or {"value": ...}
metric_templates_configmap = None  # or a ConfigMap (in namespace) of such templates, YAML per key
service = None  # the parent's Service for {original_service} (default: the parent's name)
probe_target = None  # gateway URL; None means the local sandbox's gateway
probe_rate = 200  # requests per second
probe_headers = {}  # e.g. {"Host": "shop.example"}; the sandbox gateway gets the route's host
probe_classifier = "header:X-Canarylab-Version"  # or "body:<regex with one group>"
kubeconfig = None  # None: $KUBECONFIG, else the running sandbox
lease = 30  # seconds; the controller pauses the canary this long after the driver dies
output_dir = "out/rollout"
dry_run = False

# %%
from IPython.display import display

from canarylab.rollout.session import RolloutSession, RunbookParameters

params = RunbookParameters(
    namespace=namespace,
    parent=parent,
    name=name,
    version=version,
    image=image,
    replicas=replicas,
    canary_env=canary_env,
    router=router,
    route=route,
    steps=tuple(steps),
    hold=hold,
    max_hold=max_hold,
    on_insufficient=on_insufficient,
    gates=gates,
    alpha=alpha,
    lease=lease,
    probe_target=probe_target,
    probe_rate=probe_rate,
    probe_classifier=probe_classifier,
    probe_headers=probe_headers,
    kubeconfig=kubeconfig,
    output_dir=output_dir,
    dry_run=dry_run,
    evidence=evidence,
    prometheus=prometheus,
    metric_templates=metric_templates,
    metric_templates_configmap=metric_templates_configmap,
    service=service,
)
session = RolloutSession(params)
print(session.describe())

# %% [markdown]
# ## Roll out
#
# The probe runs in the background for the whole rollout (not with `evidence = "metrics"`:
# then the gates judge the gateway's own metrics of your traffic, from Prometheus, e.g.
# `gates = {"metric_comparison": "haproxy/request-success-rate"}`). Anything that stops the rollout
# before promotion raises `RolloutStopped` here (`GateFailed` when a gate decided), after
# the rollback.

# %%
if dry_run:
    print("dry run: nothing was changed")
else:
    if evidence != "metrics":  # with metrics the gateway's counts of real traffic are judged
        session.start_probe()
    try:
        outcome = session.run()
    finally:
        display(session.summary())
        totals = session.totals()
        print(f"record: {session.record_dir}")
        print(f"requests: {totals['requests']}, failed: {totals['failed']}")
