# %% [markdown]
# # Replay a rollout
#
# A postmortem of one recorded rollout (by default the record `make demo` writes): the
# timeline with the operator's actions marked, a **time slider** that scrubs through the
# rollout showing the state and the traffic at that second, the per-step table with the
# gates' verdicts and p-values, and the traffic and latency by version.
# `canarylab replay RECORD_DIR --html report.html` writes the same into one HTML file.

# %% tags=["parameters"]
import os

record_dir = os.environ.get("CANARYLAB_RECORD", "out/demo/record")
scrub_window_s = 10  # seconds of traffic summed at each slider position

# %%
from IPython.display import Markdown, display

from canarylab.plots import figures, frames
from canarylab.plots import replay as replays
from canarylab.widgets.replay import ReplayExplorer

replay = replays.load(record_dir)
totals = replay.samples[["requests", *frames.FAILURE_COLUMNS]].sum()
display(
    Markdown(
        f"**{replay.title}** — `{replay.path}` — requests: {int(totals['requests'])}, "
        f"failed: {int(totals[list(frames.FAILURE_COLUMNS)].sum())}"
    )
)

# %% [markdown]
# ## Timeline and time slider

# %%
explorer = ReplayExplorer(replay, window_s=scrub_window_s)
explorer

# %% [markdown]
# ## Per step
# As the runbook printed it during the live run, and recomputed here from the recorded
# samples (the recomputation also counts the seconds that closed after the gate's last look).

# %%
display(Markdown("**as recorded**"), replay.recorded_steps())
display(Markdown("**replayed from the samples**"), replay.replayed_steps())

# %%
verdicts = replay.verdicts()
verdicts[[c for c in ("step", "gate", "outcome", "p_value", "reason") if c in verdicts]]

# %%
figures.step_bars(frames.step_table(replay.samples, replay.events))

# %%
figures.latency_distribution(replay.samples, replay.requests if len(replay.requests) else None)

# %% [markdown]
# ## Operator actions

# %%
frames.actions(replay.events)[["time", "message"]]
