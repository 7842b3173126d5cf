"""``kubectl canarylab …``: the canarylab command as a kubectl plugin.

kubectl runs ``kubectl-canarylab`` (a console script) for ``kubectl canarylab ARGS``
with ARGS unchanged, so every verb (``get``, ``status -w``, ``set weight``, ``abort`` …)
and flag (``--context``, ``-n``) is the same as ``canarylab``'s; only the program name
in help and errors differs. ``kubectl_complete-canarylab`` answers kubectl's plugin
completion (kubectl ≥ 1.26): kubectl calls it with the words typed after ``canarylab``,
the last one unfinished, and reads one candidate a line, then ``:<directive>``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

PROG = "kubectl canarylab"
COMPLETE_VAR = "_KUBECTL_CANARYLAB_COMPLETE"
NO_FILE_COMPLETION = 4
"""cobra's ``ShellCompDirectiveNoFileComp``: offer no file names when nothing matched."""


def main() -> None:
    """Entry point of ``kubectl-canarylab``."""
    from canarylab.cli import cli

    cli.main(prog_name=PROG, complete_var=COMPLETE_VAR)


def completions(words: Sequence[str]) -> list[str]:
    """Candidates for the last of ``words`` (the words after ``kubectl canarylab``)."""
    from click.shell_completion import ShellComplete

    from canarylab.cli import cli

    *args, incomplete = list(words) or [""]
    complete = ShellComplete(cli, {}, PROG, COMPLETE_VAR)
    return [item.value for item in complete.get_completions(args, incomplete)]


def complete_main() -> None:
    """Entry point of ``kubectl_complete-canarylab``."""
    for value in completions(sys.argv[1:]):
        print(value)
    print(f":{NO_FILE_COMPLETION}")
