"""The configuration reference (``docs/configuration.md``), generated from ``Settings``.

    python -m streamer.config.reference            # print the page
    python -m streamer.config.reference --write    # write docs/configuration.md
    python -m streamer.config.reference --check    # exit 1 when the page is out of date

Every field of ``Settings`` is one row: its environment variable, YAML key and chart value,
type, default, allowed values and the first sentence of its ``description``. A field added
tomorrow appears without touching this module; a nested model's fields become rows of
their own (``STREAMER_A__B``, YAML ``a.b``). A unit test keeps the committed page equal to
this output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from streamer.config import chart_values
from streamer.config.reference_text import FOOTER, HEADER
from streamer.config.settings import ENV_PREFIX, Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "python -m streamer.config.reference --write"


@dataclass(frozen=True)
class Row:
    """One setting as the reference shows it."""

    env: str
    yaml_key: str
    chart: str
    type: str
    default: str
    allowed: str
    meaning: str


def rows(model: type[BaseModel] = Settings, chart: Path = chart_values.CHART) -> list[Row]:
    """Every setting of ``model``, in declaration order."""
    dedicated = chart_values.dedicated_values(chart) if chart.is_dir() else {}
    secret = chart_values.secret_pattern(chart) if chart.is_dir() else None
    return [_row(path, info, dedicated, secret) for path, info in _fields(model, ())]


def _fields(
    model: type[BaseModel], prefix: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        nested = _without_none(info.annotation)
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from _fields(nested, path)
        else:
            yield path, info


def _row(
    path: tuple[str, ...],
    info: FieldInfo,
    dedicated: dict[str, str],
    secret: re.Pattern[str] | None,
) -> Row:
    env = ENV_PREFIX + "__".join(path).upper()
    key = ".".join(path)
    chart = dedicated.get(env) or (
        # The chart refuses secret-looking names in plain values: they come from a Secret.
        f"secretEnv.{env}" if secret and secret.search(key) else f"settings.{key}"
    )
    kind, choices = _type(info.annotation)
    return Row(
        env=env,
        yaml_key=key,
        chart=chart,
        type=kind,
        default=_default(info),
        allowed=", ".join([*choices, *_constraints(info)]),
        meaning=meaning(info),
    )


def meaning(info: FieldInfo) -> str:
    """The one line the reference (and the chart's values comments) give a setting."""
    text = " ".join((info.description or "").split())
    return text or "(no description)"


def _without_none(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}


def _type(annotation: Any) -> tuple[str, list[str]]:
    """A type as a reader names it, and the values it allows (a ``Literal``'s, a bool's)."""
    inner = _without_none(annotation)
    optional = " (optional)" if inner is not annotation else ""
    origin = get_origin(inner)
    if origin is Literal:
        return "choice" + optional, [f"`{a}`" for a in get_args(inner)]
    if isinstance(inner, type) and issubclass(inner, Enum):
        return "choice" + optional, [f"`{m.value}`" for m in inner]
    if inner is bool:
        return "boolean" + optional, ["`true`", "`false`"]
    if origin is dict:
        return "JSON object" + optional, []
    if origin in (list, tuple, set, frozenset):
        return "JSON array" + optional, []
    name = _NAMES.get(inner, getattr(inner, "__name__", str(inner)))
    return name + optional, []


def _constraints(info: FieldInfo) -> list[str]:
    found = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            found.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            found.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            found.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            found.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            found.append("not empty" if item.min_length == 1 else f"length ≥ {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            found.append(f"length ≤ {item.max_length}")
    return found


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "none"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list | tuple):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Markdown table cell text: ``<`` and ``|`` would break the page."""
    return html.escape(text, quote=False).replace("|", "\\|")


def render(model: type[BaseModel] = Settings, chart: Path = chart_values.CHART) -> str:
    """The whole page, as committed in ``docs/configuration.md``."""
    lines = [
        HEADER.strip(),
        "",
        "| setting (environment; YAML) | chart value | type | default | allowed | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(model, chart):
        lines.append(
            f"| `{row.env}`<br>`{row.yaml_key}` | `{row.chart}` | {row.type} | {row.default} "
            f"| {row.allowed} | {_cell(row.meaning)} |"
        )
    return "\n".join([*lines, "", FOOTER.strip(), ""])


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the page; ``--check`` says how to regenerate it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {PAGE.name}")
    action.add_argument("--check", action="store_true", help="exit 1 when it is out of date")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.page.write_text(text)
    elif args.check:
        if not args.page.is_file() or args.page.read_text() != text:
            print(f"{args.page} is out of date with Settings: run {REGENERATE}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
