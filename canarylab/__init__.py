"""canarylab: canary rollouts on Kubernetes, driven from Jupyter.

Layers, top to bottom (checked by import-linter, see ``.importlinter``):
notebook helpers and the CLI; rollout primitives, probe and recorder; the
operator; pure models and decisions. The sandbox stands beside them.
"""

__version__ = "0.1.0"
