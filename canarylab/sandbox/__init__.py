"""The local sandbox: a real Kubernetes API on loopback, built from Go modules.

``Sandbox`` is the Python handle (a context manager); ``canarylab sandbox`` is
the CLI over it. ``canarylab.sandbox.finder`` lets ``canarylab.kube.resolve()`` find a
running sandbox and its gateway through an entry point, so cluster access never imports
this package. See ``docs/sandbox.md`` for the architecture and its limits.
"""

from canarylab.errors import SandboxError
from canarylab.sandbox.build import pinned_versions
from canarylab.sandbox.core import Sandbox, default_state_dir

__all__ = ["Sandbox", "SandboxError", "default_state_dir", "pinned_versions"]
