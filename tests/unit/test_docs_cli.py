"""Doc check: every `canarylab …` / `kubectl canarylab …` line in the docs' code blocks parses.

Each line is parsed by the real command (arguments, option names, choices and types),
without running it, so a renamed verb or flag breaks this test before it misleads a
reader. The flow itself runs in tests/integration/test_kubectl_plugin.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from canarylab.cli import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
VERBS = {"create", "get", "status", "set", "promote", "abort", "resume", "delete"}


def command_lines() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        blocks = re.findall(r"```(?:sh|bash|console|shell)\n(.*?)```", doc.read_text(), re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                if "canarylab " not in line:
                    continue
                for part in line.removeprefix("$ ").split("&&"):
                    words = shlex.split(part, comments=True)
                    if words[:1] == ["kubectl"] and words[1:2] == ["canarylab"]:
                        words = words[1:]
                    if words and words[0].endswith("/canarylab"):  # .venv/bin/canarylab
                        words = ["canarylab", *words[1:]]
                    if words[:1] == ["canarylab"] and words[1:2] and words[1] in VERBS:
                        found.append((doc.name, shlex.join(words)))
    return found


def parse(args: list[str]) -> None:
    """Parse ``args`` as ``canarylab`` would, down to the verb, without invoking it."""
    command: click.Command = cli
    ctx = command.make_context("canarylab", list(args), resilient_parsing=False)
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None
        assert name is not None
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)


def test_the_cli_doc_has_examples() -> None:
    lines = [line for doc, line in command_lines() if doc == "cli.md"]
    assert len(lines) >= 15
    for verb in VERBS:
        assert any(line.split()[1] == verb for line in lines), verb


@pytest.mark.parametrize(("doc", "line"), command_lines())
def test_documented_command_lines_parse(doc: str, line: str) -> None:
    parse(shlex.split(line)[1:])
