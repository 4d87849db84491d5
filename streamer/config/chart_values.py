"""The Helm chart as the configuration reference reads it: which value sets which setting.

A few settings have values of their own in the chart (``kafka.bootstrapServers`` renders
``STREAMER_KAFKA_BOOTSTRAP_SERVERS``); every other one is set under ``settings.<field>``.
The templates are the truth for the first kind: a ``STREAMER_X: {{ .Values.a.b }}`` line
of the ConfigMap (through an ``include``d helper: the first value the helper reads; or
``{{ . }}`` inside a ``with``), or an env entry ``- name: STREAMER_X`` of a workload: the
value its body reads (a Secret's name), or, when its body reads none (a ``fieldRef``), what
the ``if`` or ``with`` it sits in reads. An entry with a literal ``value:`` is the chart's
own and no value of it.

``values.yaml`` documents each value with the comment block right above it (helm-docs'
``# --`` style), and a value that sets a setting names its variable there. PyYAML drops
comments, so the file is read line by line: block-style mappings only, which is what the
chart's values file is.
"""

from __future__ import annotations

import re
from pathlib import Path

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+|\"[^\"]+\"):(?:\s|$)")
_COMMENT = re.compile(r"^ *#(?P<text>.*)$")
_ENV = re.compile(r"\bSTREAMER_[A-Z0-9_]*[A-Z0-9]\b")
_VALUE = re.compile(r"\.Values\.([A-Za-z0-9_.]*[A-Za-z0-9_])")
_CONFIG_ENTRY = re.compile(r"^\s*(STREAMER_[A-Z0-9_]+):\s*(.*)$")
_ENV_ENTRY = re.compile(r"^\s*- name:\s*(STREAMER_[A-Z0-9_]+)\s*$")
_INCLUDE = re.compile(r'include\s+"([^"]+)"')
_DEFINE = re.compile(r'\{\{-?\s*define\s+"([^"]+)"\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}', re.DOTALL)
_BLOCK = re.compile(r"^\s*\{\{-?\s*(if|with|range|else|end)\b(.*)$")
_DOT = re.compile(r"\{\{-?\s*\.\s*[|}]")

CHART = Path(__file__).resolve().parents[2] / "helm" / "streamer"
"""The chart in a source checkout (the reference is generated from a checkout)."""


def value_comments(text: str) -> dict[str, str]:
    """Every key path of a values file (``kafka.bootstrapServers``) with the comment block
    right above it, ``# --`` and line breaks removed; an empty string when there is none."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            pending.append(comment.group("text").strip().removeprefix("--").strip())
            continue
        key = _KEY.match(line)
        if key is None:
            pending = []  # a blank line or a list item ends a comment block
            continue
        indent = len(key.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group("key").strip('"')))
        comments[".".join(name for _, name in stack)] = " ".join(p for p in pending if p)
        pending = []
    return comments


def env_names(comment: str) -> set[str]:
    """The ``STREAMER_*`` variables a comment names."""
    return set(_ENV.findall(comment))


def helper_values(helpers: str) -> dict[str, str]:
    """Each named template (``define``) with the first value it reads."""
    return {
        name: found.group(1)
        for name, body in _DEFINE.findall(helpers)
        if (found := _VALUE.search(body))
    }


def template_values(template: str, helpers: dict[str, str] | None = None) -> dict[str, str]:
    """``STREAMER_X`` → the value that sets it in one template (see the module's doc)."""
    found: dict[str, str] = {}
    lines = template.splitlines()
    opened: list[str] = []  # what each open `if`/`with`/`range` reads ("" when no value)
    for i, line in enumerate(lines):
        around = next((v for v in reversed(opened) if v), "")
        if config := _CONFIG_ENTRY.match(line):
            name, value = config.group(1), _config_value(config.group(2), around, helpers or {})
        elif env := _ENV_ENTRY.match(line):
            name, value = env.group(1), _env_value(lines[i + 1 :], around)
        else:
            name, value = "", ""
        if value:
            found.setdefault(name, value)
        _track_blocks(line, opened)
    return found


def _track_blocks(line: str, opened: list[str]) -> None:
    """Open, re-point or close the template blocks a line starts, continues or ends."""
    control = _BLOCK.match(line)
    if control is None:
        return
    word, rest = control.group(1), control.group(2)
    read = (_VALUE.findall(rest) or [""])[-1]
    if word in ("if", "with", "range"):
        opened.append(read)
    elif word == "else" and opened and read:
        opened[-1] = read
    elif word == "end" and opened:
        opened.pop()


def _env_value(following: list[str], around: str) -> str:
    """An env entry's value: the chart value its body reads (a Secret's name); none for a
    literal ``value:`` the chart fixes itself; else the block it sits in (its ``if``)."""
    for line in following:
        stripped = line.strip()
        if _ENV_ENTRY.match(line) or stripped.startswith("{{"):
            break
        if stripped.startswith("value:") and "{{" not in stripped:
            return ""
        if own := _VALUE.search(stripped):
            return own.group(1)
    return around


def _config_value(expression: str, nearest: str, helpers: dict[str, str]) -> str:
    if own := _VALUE.search(expression):
        return own.group(1)
    if included := _INCLUDE.search(expression):
        return helpers.get(included.group(1), "")
    return nearest if _DOT.search(expression) else ""


def dedicated_values(chart: Path = CHART) -> dict[str, str]:
    """``STREAMER_X`` → the chart value that sets it, over every template of the chart."""
    helpers = "".join(p.read_text() for p in sorted((chart / "templates").glob("*.tpl")))
    named = helper_values(helpers)
    found: dict[str, str] = {}
    for template in sorted((chart / "templates").glob("*.yaml")):
        for name, path in template_values(template.read_text(), named).items():
            found.setdefault(name, path)
    return found


def secret_pattern(chart: Path = CHART) -> re.Pattern[str] | None:
    """The chart's pattern of secret-looking names (refused in plain values), if it has one."""
    helpers = "".join(p.read_text() for p in sorted((chart / "templates").glob("*.tpl")))
    found = re.search(r'define "streamer.secretPattern" -?}}\s*(.*?)\s*{{-? end', helpers, re.S)
    return re.compile(found.group(1)) if found else None


def read_comments(chart: Path = CHART) -> dict[str, str]:
    """The comments of ``<chart>/values.yaml`` by key path."""
    return value_comments((chart / "values.yaml").read_text())


def settings_values(chart: Path = CHART) -> dict[str, str]:
    """The chart's ``settings`` map as written in ``values.yaml``: key → its comment."""
    return {
        path.removeprefix("settings."): comment
        for path, comment in read_comments(chart).items()
        if path.startswith("settings.") and path.count(".") == 1
    }
