"""A runbook's parameters: what its ``parameters`` cell declares, and the values given.

``canarylab run`` takes values the way papermill does — ``-f params.yaml`` first, then
``-p NAME VALUE``, then ``-r NAME VALUE`` (raw), later ones winning — but checks each
against the parameters cell before the kernel starts, so a bad value is a usage error
(exit 64) and never a half-run rollout:

- a name the cell does not declare is refused, naming the ones it does;
- a parameter's type is its annotation when the cell has one (``replicas: int = 2``),
  else the type of its default, or None (``-p lease None``, as papermill reads it): a
  string default takes the ``-p`` text as it is (``-p version 1.10`` is the string
  ``"1.10"``, not the float 1.1; a YAML-quoted text, ``-p out '"/tmp/x"'``, loses its
  quotes), a number default takes any number, a bool
  ``true``/``false``, a list or dict a YAML list or mapping; a ``None`` default (or one
  that is not a literal) takes any YAML value;
- ``-r`` passes the text unparsed, so only to a parameter that takes a string;
- ``-f`` values are YAML already: a string parameter given ``1.10`` there is refused
  with a hint to quote it, since the file's text is gone by then.

Pure apart from reading the notebook and the YAML file; it never runs anything.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

ANY: frozenset[str] = frozenset()
"""The kinds of a parameter that takes any value."""

NUMBER = frozenset({"int", "float"})

_ANNOTATION_KINDS = {
    "str": {"str"},
    "int": {"int"},
    "float": {"int", "float"},  # as in typing: an int is a valid float
    "bool": {"bool"},
    "list": {"list"},
    "tuple": {"list"},
    "sequence": {"list"},
    "dict": {"dict"},
    "mapping": {"dict"},
    "none": {"None"},
    "nonetype": {"None"},
}

_KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "None": "None",
}


def kind_of(value: Any) -> str:
    """The kind (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``, ``None``) of a value."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def kinds_of_annotation(annotation: str) -> frozenset[str]:
    """The kinds an annotation allows (``str | None``, ``Optional[int]``, ``list[int]``);
    ANY when a part of it is not one of the kinds above."""
    text = annotation.strip()
    optional = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", text)
    if optional:
        inner = kinds_of_annotation(optional.group(1))
        return inner | {"None"} if inner else ANY
    union = re.fullmatch(r"(?:typing\.)?Union\[(.*)\]", text)
    parts = _split_top(union.group(1) if union else text)
    if len(parts) > 1:
        kinds = [kinds_of_annotation(p) for p in parts]
        return ANY if ANY in kinds else frozenset().union(*kinds)
    base = text.split("[", 1)[0].rsplit(".", 1)[-1].lower()
    return frozenset(_ANNOTATION_KINDS.get(base, ()))


def _split_top(text: str) -> list[str]:
    """``a | b[c, d]`` or ``a, b[c, d]`` split at the top level."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if depth == 0 and ch in "|,":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def kinds_of_default(default: Any) -> frozenset[str]:
    """What a parameter without an annotation takes, from its default: that kind, or None
    (as papermill reads ``-p lease None``; the runbooks take None as "not set")."""
    kind = kind_of(default)
    if kind == "None":
        return ANY
    return (NUMBER if kind in ("int", "float") else frozenset({kind})) | {"None"}


@dataclass(frozen=True)
class Parameter:
    """One parameter of a runbook's ``parameters`` cell."""

    name: str
    default: Any
    """The default's value (None when it is not a literal)."""
    kinds: frozenset[str]
    """What it takes (:func:`kind_of` names); empty: anything."""

    @classmethod
    def from_cell(cls, name: str, info: Mapping[str, Any]) -> Parameter:
        """From papermill's ``inspect_notebook`` entry for it."""
        try:
            default = ast.literal_eval(str(info.get("default", "None")))
            literal = True
        except (ValueError, SyntaxError):
            default, literal = None, False
        annotation = str(info.get("inferred_type_name") or "None")
        if annotation != "None":  # papermill's "None": no annotation
            kinds = kinds_of_annotation(annotation)
        else:
            kinds = kinds_of_default(default) if literal else ANY
        return cls(name, default, kinds)

    def describe(self) -> str:
        """What it takes, in words (``a string or None``)."""
        if not self.kinds:
            return "any value"
        kinds = self.kinds
        if kinds >= NUMBER:  # an int is a number too
            kinds = kinds - {"int"}
        order = [k for k in _KIND_WORDS if k in kinds]
        return " or ".join(_KIND_WORDS[k] for k in order)

    def check(self, value: Any, hint: str = "-p") -> Any:
        """``value`` when this parameter takes it, else a usage error saying what it takes."""
        kind = kind_of(value)
        if not self.kinds or kind in self.kinds:
            return value
        why = f"{self.name} takes {self.describe()}, not {value!r}"
        if "str" in self.kinds and hint == "-f":
            why += " (quote it in the file to keep it a string)"
        raise click.BadParameter(why, param_hint=hint)

    def from_text(self, raw: str) -> Any:
        """A ``-p`` value: the text itself for a string parameter, else read as YAML."""
        if "str" in self.kinds:
            if "None" in self.kinds and raw in ("None", "null", "~"):
                return None
            if raw[:1] in ("'", '"'):  # a YAML-quoted string: its value, without the quotes
                quoted = parse_value(raw)
                if isinstance(quoted, str):
                    return quoted
            return raw
        return self.check(parse_value(raw, strict=bool(self.kinds)), "-p")

    def from_raw(self, raw: str) -> str:
        """A ``-r`` value: the text, unparsed (only for a parameter that takes a string)."""
        if self.kinds and "str" not in self.kinds:
            raise click.BadParameter(
                f"{self.name} takes {self.describe()}; -r passes text as a string: use -p",
                param_hint="-r",
            )
        return raw


def parse_value(raw: str, strict: bool = False) -> Any:
    """A ``-p`` value as YAML (``5``, ``[5, 25]``, ``true``, ``{a: 1}``; ``None`` as in
    papermill), else the text; ``strict``: text that is not YAML is an error."""
    import yaml

    if raw == "None":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        if strict:
            raise click.BadParameter(
                f"{raw!r} is not a YAML value: {err}", param_hint="-p"
            ) from None
        return raw


def runbook_parameters(runbook: Path) -> dict[str, Parameter]:
    """The runbook's ``parameters`` cell, in its order (empty when it has none)."""
    import papermill as pm

    return {
        name: Parameter.from_cell(name, info)
        for name, info in pm.inspect_notebook(str(runbook)).items()
    }


def read_file(path: Path) -> dict[str, Any]:
    """A ``-f`` file: a YAML mapping of parameter names to values."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise click.BadParameter(f"cannot read {path}: {err}", param_hint="-f") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise click.BadParameter(
            f"{path} must be a YAML mapping of parameter names to values", param_hint="-f"
        )
    return loaded


def check_parameters(names: Iterable[str], declared: Mapping[str, Any]) -> None:
    """Refuse (exit 64) a name the runbook does not declare (a typo would run defaults)."""
    if not declared:
        return  # no parameters cell: papermill adds one, nothing to check against
    unknown = sorted(set(names) - set(declared))
    if unknown:
        raise click.BadParameter(
            f"the runbook has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters: {', '.join(declared)}",
            param_hint="-p",
        )


def given_parameters(
    declared: Mapping[str, Parameter],
    file_values: Mapping[str, Any],
    text: Iterable[tuple[str, str]],
    raw: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    """The values to inject: ``-f``, then ``-p``, then ``-r``, each checked (module docstring).

    Without a parameters cell nothing can be checked: ``-p`` is read as YAML, ``-r`` kept.
    """
    text, raw = list(text), list(raw)
    check_parameters([*file_values, *(n for n, _ in text), *(n for n, _ in raw)], declared)
    free = Parameter("", None, ANY)
    values: dict[str, Any] = {}
    for name, value in file_values.items():
        values[name] = declared.get(name, free).check(value, "-f")
    for name, value in text:
        values[name] = declared.get(name, free).from_text(value)
    for name, value in raw:
        values[name] = declared.get(name, free).from_raw(value)
    return values
