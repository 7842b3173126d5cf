# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Step through a canary rollout
#
# An SRE's cockpit for one CanaryDeployment: a **control panel** (weight slider,
# create / replace / abort / delete, a status line with the last Kubernetes Event) above a
# **live chart** of the probe's traffic: response share, failures and p99 by version, and
# the desired and applied weight. Under the status line, each **gate's running state** at
# the current weight: passes, fails or still collecting, with its evidence so far and its
# bound or e-value (the chart's title shows the same states).
#
# Run the cells in order, then drive the rollout with the panel: **create** → move the
# slider (one patch per release) → **replace** → **delete**. The cells at the end walk the
# same steps by pressing the same buttons, when `walk = True` (that is how CI runs this
# notebook). Everything is recorded in `record_dir`; replay it with
# `notebooks/replay.ipynb` or `canarylab replay RECORD_DIR --html report.html`.
#
# Needs the CanaryDeployment controller running (`canarylab controller`).

# %% tags=["parameters"]
import os

from canarylab.widgets.session import canary_record_dir, requested_canary

# As a dashboard, the page's URL chooses the canary: ?namespace=demo&parent=hello[&name=…]
chosen = requested_canary()  # else CANARYLAB_NAMESPACE / _PARENT / _NAME
namespace = chosen.get("namespace", "demo")
parent = chosen.get("parent", "hello")  # the parent Deployment
name = chosen.get("name")  # the CanaryDeployment (default: the parent's name)
image = "canarylab/demo:v2"
version = "v2"  # what the probe's classifier reports for the canary
replicas = 2
canary_env = {"DEMO_MESSAGE": "hello Hongbo"}
kubeconfig = None  # None: $KUBECONFIG, else the running sandbox
context = None  # a context in that kubeconfig
deploy_sample_app = True  # create the sample "hello world" parent when it is missing
probe_target = None  # None: the sandbox gateway
probe_rate = 100  # requests per second
probe_headers = {}
record_base = os.environ.get("CANARYLAB_RECORD", "out/step-through")
record_dir = canary_record_dir(record_base, namespace, name or parent)
window_s = 300  # seconds of traffic the live chart keeps
gates = {  # judged at each weight and shown in the panel (advice; nothing acts on them)
    "max_error_rate": {"limit": 0.05, "min_requests": 50},
    "error_rate_comparison": {"min_difference": 0.005, "min_requests": 100},
}
alpha = 0.01  # false-alarm level of one weight's gates together
walk = False  # True: walk create → shift → replace → delete unattended
walk_weights = [20, 60]
hold_s = 3  # seconds to hold each weight during the walk

# %% [markdown]
# ## Connect
# The sandbox by default, or `kubeconfig` / `context`; the probe starts in the background.

# %%
import time

from canarylab.widgets.session import StepThrough, StepThroughSettings

session = StepThrough(
    StepThroughSettings(
        namespace=namespace,
        parent=parent,
        name=name,
        image=image,
        version=version,
        replicas=replicas,
        canary_env=canary_env,
        kubeconfig=kubeconfig,
        context=context,
        deploy_sample_app=deploy_sample_app,
        probe_target=probe_target,
        probe_rate=probe_rate,
        probe_headers=probe_headers,
        record_dir=record_dir,
        window_s=window_s,
        gates=gates,
        alpha=alpha,
    )
)
print(
    f"canary {namespace}/{session.rollout.name} · cluster {session.api.configuration.host} · "
    f"record {session.settings.record_dir}"
)

# %% [markdown]
# ## Control panel and live chart

# %%
session

# %% [markdown]
# ## Walk through (when `walk = True`)
# Each step presses the panel's button (or moves its slider) and waits for the cluster.

# %%
if walk:
    print(session.create().brief())

# %%
if walk:
    for weight in walk_weights:
        print(session.shift(weight).brief())
        time.sleep(hold_s)

# %%
if walk:
    print(session.replace().brief())

# %%
if walk:
    print(session.delete().brief())
    print(f"record: {session.close(outcome='succeeded')}")
