"""docs/architecture.md's layer tables say exactly what .importlinter enforces."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def contracts() -> tuple[list[list[str]], list[tuple[list[str], list[str]]]]:
    ini = configparser.ConfigParser()
    ini.read(REPO / ".importlinter")
    layers: list[list[str]] = []
    forbidden: list[tuple[list[str], list[str]]] = []
    for section in ini.sections():
        if not section.startswith("importlinter:contract:"):
            continue
        c = ini[section]
        if c["type"] == "layers":
            assert not layers, "one layers contract"
            layers = [
                sorted(m.strip() for m in re.split(r"[:|]", line))
                for line in c["layers"].split("\n")
                if line.strip()
            ]
        elif c["type"] == "forbidden":
            forbidden.append((lines(c["source_modules"]), lines(c["forbidden_modules"])))
        else:
            raise AssertionError(f"{section}: a contract type the docs cannot show")
    return layers, forbidden


def lines(value: str) -> list[str]:
    return sorted(x.strip() for x in value.split("\n") if x.strip())


def doc_tables() -> list[list[list[str]]]:
    """Each markdown table of the doc's first section, as rows of backticked-name cells."""
    text = (REPO / "docs" / "architecture.md").read_text()
    head = text.split("\n## ", 1)[0]
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in head.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue
        if current is None:
            current = []
            tables.append(current)
            continue  # the header row
        current.append(cells)
    return tables


def names(cell: str) -> list[str]:
    return sorted(re.findall(r"`([^`]+)`", cell))


def test_the_layer_table_is_the_layers_contract() -> None:
    layers, _ = contracts()
    table = doc_tables()[0]
    assert [names(row[1]) for row in table] == layers


def test_the_rules_table_is_the_forbidden_contracts() -> None:
    _, forbidden = contracts()
    table = doc_tables()[1]
    assert sorted((names(row[1]), names(row[2])) for row in table) == sorted(forbidden)
