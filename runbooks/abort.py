# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Emergency rollback
#
# Sets the canary's weight to 0 (the route goes back to 100% parent), waits until the route
# carries it, then deletes the CanaryDeployment (the controller removes the canary
# Deployment, Service and managed routes). Safe to re-run: a canary that is already gone is
# reported and left alone. The action is appended to `record_dir` when given.

# %% tags=["parameters"]
# Parameters
namespace = "default"
name = "hello"  # the CanaryDeployment
kubeconfig = None  # None: $KUBECONFIG, else the running sandbox
record_dir = None  # append to this record (e.g. the rollout's <output_dir>/record)
timeout = 60

# %%
from canarylab.kube import api_client
from canarylab.record import Recorder
from canarylab.rollout import Rollout

api = api_client(kubeconfig)
recorder = Recorder(record_dir) if record_dir else None
found = Rollout(namespace, name, kube=api).get()
parent = found["spec"]["parentDeployment"] if found else name
rollout = Rollout(namespace, parent, name=name, kube=api, recorder=recorder)
print("before:", rollout.status().brief())

# %%
after = rollout.abort(timeout=timeout)
print("after:", after.brief())
if recorder is not None:
    recorder.close()
