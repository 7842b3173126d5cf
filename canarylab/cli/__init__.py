"""The ``canarylab`` command.

Each command group lives in its own module and imports its heavy dependencies
lazily, so ``canarylab --help`` stays fast and a broken optional dependency
breaks only the command that needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from canarylab import __version__
from canarylab.cli.codes import ERROR, USAGE, Group
from canarylab.cli.controller import controller, install_crds
from canarylab.cli.dashboard import dashboard
from canarylab.cli.demo import demo
from canarylab.cli.demoapp import demo_app
from canarylab.cli.probe import probe
from canarylab.cli.replay import replay
from canarylab.cli.rollout import COMMANDS as rollout_commands
from canarylab.cli.run import run
from canarylab.cli.sandbox import sandbox
from canarylab.errors import CanarylabError


class Canarylab(Group):
    """The command group; its ``main`` turns errors into the exit codes of ``ExitCode``.

    A usage error (a bad option, argument or ``-p`` parameter) exits 64, not click's 2,
    which means "rolled back, safe" here; canarylab's own errors print a message and
    exit 1. Commands that know better (``run``, the rollout verbs) exit themselves.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.UsageError as err:
            err.show()
            sys.exit(USAGE)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except CanarylabError as err:
            click.secho(f"error: {err}", fg="red", err=True)
            sys.exit(ERROR)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(
    cls=Canarylab,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="canarylab")
def cli() -> None:
    """Canary rollouts on Kubernetes, from Jupyter, the CLI or a runbook."""


cli.add_command(sandbox)
cli.add_command(demo)
cli.add_command(probe)
cli.add_command(demo_app)
cli.add_command(controller)
cli.add_command(install_crds)
cli.add_command(run)
cli.add_command(replay)
cli.add_command(dashboard)
for command in rollout_commands:  # create, get, status, set weight, promote, abort, ...
    cli.add_command(command)


def main() -> None:
    """Entry point: run the CLI, turning errors into exit codes (``Canarylab.main``)."""
    cli()
