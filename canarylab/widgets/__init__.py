"""Notebook widgets: the control panel of one CanaryDeployment and the live chart.

ipywidgets and plotly are imported here and in :mod:`canarylab.plots` only. The
widgets hold no rollout logic: the panel calls rollout primitives, the chart
draws probe samples with the same code as the static figures.
"""

from __future__ import annotations

from canarylab.widgets.live import LiveChart
from canarylab.widgets.panel import ControlPanel, PanelStatus
from canarylab.widgets.window import LiveWindow

__all__ = ["ControlPanel", "LiveChart", "LiveWindow", "PanelStatus"]
