# %% [markdown]
# # Replay a rollout
#
# A postmortem of one recorded rollout (by default the record `make demo` writes). It
# starts with **how the rollout ended and why**: which gate decided, on which numbers, at
# which step. Then the timeline with the operator's actions marked and a **time slider**
# that scrubs through the rollout, one per-step table (with a note wherever the replayed
# counts differ from what the runbook judged), every gate verdict, the hold extensions,
# probe and lease events, and the traffic and latency by version.
# `canarylab replay RECORD_DIR --html report.html` writes the same into one HTML file.

# %% tags=["parameters"]
import os

record_dir = os.environ.get("CANARYLAB_RECORD", "out/demo/record")
scrub_window_s = 10  # seconds of traffic summed at each slider position

# %%
from IPython.display import HTML, Markdown, display

from canarylab.plots import figures, frames, report
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
display(HTML(report.outcome_html(replay.decision())))

# %% [markdown]
# ## Timeline and time slider

# %%
explorer = ReplayExplorer(replay, window_s=scrub_window_s)
explorer

# %% [markdown]
# ## Per step
# Counts recomputed from the recorded samples with the runbook's own function; `judged`
# is what the runbook counted, and `note` says why the two differ when they do.

# %%
report.display_table(replay.step_table())

# %% [markdown]
# ## Every gate verdict, then extensions, baseline, probe and lease

# %%
verdicts = replay.verdicts()
report.display_table(verdicts[[c for c in report.VERDICT_COLUMNS if c in verdicts]])

# %%
report.display_table(replay.incidents())

# %%
figures.step_bars(frames.step_table(replay.samples, replay.events))

# %%
figures.latency_distribution(replay.samples, replay.requests if len(replay.requests) else None)

# %% [markdown]
# ## Operator actions and parameters

# %%
display(frames.actions(replay.events)[["time", "message"]])
display(HTML(report.header_html(replay)))
