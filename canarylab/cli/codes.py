"""``--help`` epilogs listing the exit codes, without importing ``canarylab.record`` early.

``canarylab.record`` loads pandas, which the controller image does not have, and every
command module is imported by ``canarylab controller`` too: so the epilog is read from
``canarylab.record.events`` only when help is printed, and the two codes the group's
error handling needs are repeated here (a unit test holds them equal to ``ExitCode``).
"""

from __future__ import annotations

import click

ERROR = 1
"""``ExitCode.ERROR``: an error before anything changed."""
USAGE = 64
"""``ExitCode.USAGE``: bad input (click's usage errors would exit 2, "rolled back")."""


def exit_codes_help() -> str:
    from canarylab.record.events import EXIT_CODES_HELP

    return EXIT_CODES_HELP


class _ExitCodesEpilog:
    epilog: str | None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        parts = [self.epilog or "", exit_codes_help()]
        for text in filter(None, parts):
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(text)


class Command(_ExitCodesEpilog, click.Command):
    """A command whose help ends with the exit codes."""


class Group(_ExitCodesEpilog, click.Group):
    """A group whose help ends with the exit codes."""
