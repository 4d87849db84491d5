"""The configuration reference is the code's: generated from ``Settings`` and the chart.

docs/configuration.md must equal what ``python -m streamer.config.reference`` renders, every
setting must say what it means, and the chart's values.yaml must agree: its ``settings.*``
keys are settings whose comments give their meaning, and each value the templates render
into a ``STREAMER_*`` variable names that variable in its comment.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from streamer.config import chart_values, reference
from streamer.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "streamer"


def test_configuration_page_is_generated_from_the_code() -> None:
    page = REPO / "docs" / "configuration.md"
    assert page.read_text() == reference.render(), (
        f"docs/configuration.md differs from Settings: run {reference.REGENERATE}"
    )


def test_every_setting_has_a_line_of_meaning() -> None:
    missing = [
        name for name, f in Settings.model_fields.items() if not (f.description or "").strip()
    ]
    assert not missing, f"add description= to these Settings fields: {missing}"


def test_the_check_command_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("stale\n")
    assert reference.main(["--check", "--page", str(page)]) == 1
    assert reference.REGENERATE in capsys.readouterr().err
    assert reference.main(["--write", "--page", str(page)]) == 0
    assert reference.main(["--check", "--page", str(page)]) == 0


class _Color(enum.Enum):
    RED = "red"


class _Inner(BaseModel):
    depth: int = Field(3, ge=1, description="how deep")


class _Example(BaseModel):
    """A settings model of every kind of field the generator must handle."""

    name: str = Field(min_length=1, description="required, no default")
    mode: Literal["a", "b"] = Field("a", description="a <choice> | with a pipe")
    path: Path | None = None
    token: SecretStr = SecretStr("s3")
    props: dict[str, str] = Field(default_factory=dict, description="x")
    ratio: float = Field(0.5, gt=0, lt=1, description="y")
    color: _Color = _Color.RED
    flag: bool = True
    inner: _Inner = _Inner()


def test_any_field_becomes_a_row(tmp_path: Path) -> None:
    rows = {r.yaml_key: r for r in reference.rows(_Example, chart=tmp_path / "no-chart")}
    assert list(rows) == [
        "name", "mode", "path", "token", "props", "ratio", "color", "flag", "inner.depth"
    ]  # fmt: skip
    assert (rows["name"].default, rows["name"].allowed) == ("required", "not empty")
    assert (rows["mode"].type, rows["mode"].allowed) == ("choice", "`a`, `b`")
    assert (rows["path"].type, rows["path"].default) == ("path (optional)", "none")
    assert (rows["token"].type, rows["token"].default) == ("secret string", "`s3`")
    assert (rows["props"].type, rows["props"].default) == ("JSON object", "`{}`")
    assert rows["ratio"].allowed == "> 0, < 1"
    assert (rows["color"].allowed, rows["color"].default) == ("`red`", "`red`")
    assert (rows["flag"].allowed, rows["flag"].default) == ("`true`, `false`", "`true`")
    assert rows["path"].meaning == "(no description)"
    depth = rows["inner.depth"]
    assert (depth.env, depth.chart, depth.default) == (
        "STREAMER_INNER__DEPTH",
        "settings.inner.depth",
        "`3`",
    )
    page = reference.render(_Example, chart=tmp_path / "no-chart")
    assert "a &lt;choice&gt; \\| with a pipe |" in page, "a cell must not break the table"


def test_settings_in_the_charts_values_are_settings_with_their_meaning() -> None:
    keys = chart_values.settings_values(CHART)
    assert keys, "no settings.* keys read from values.yaml: is the parser broken?"
    problems = []
    for key, comment in keys.items():
        field = Settings.model_fields.get(key)
        if field is None:
            problems.append(f"settings.{key} is not a setting")
            continue
        meaning = reference.meaning(field)
        if meaning not in comment or f"STREAMER_{key.upper()}" not in comment:
            problems.append(
                f"settings.{key}: its comment should read '# -- {meaning} (STREAMER_{key.upper()})'"
            )
    assert not problems, "\n".join(problems)


def test_chart_values_that_set_a_setting_name_it() -> None:
    comments = chart_values.read_comments(CHART)
    dedicated = chart_values.dedicated_values(CHART)
    known = {f"STREAMER_{name.upper()}" for name in Settings.model_fields}
    rendered = {env: path for env, path in dedicated.items() if env in known}
    assert "STREAMER_KAFKA_BOOTSTRAP_SERVERS" in rendered, "is the template parser broken?"
    problems = [
        f"{path} sets {env}: say so in its values.yaml comment"
        for env, path in rendered.items()
        if path not in comments or env not in chart_values.env_names(comments[path])
    ]
    assert not problems, "\n".join(problems)


def test_settings_the_chart_reserves_have_a_value_of_their_own() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    found = re.search(r'define "streamer.reservedSettings" -}}\s*(.*?)\s*{{- end', helpers, re.S)
    assert found, "the chart's reservedSettings list moved"
    reserved = found.group(1).split()
    rows = {r.yaml_key: r for r in reference.rows()}
    assert set(reserved) <= set(rows), set(reserved) - set(rows)
    wrong = [name for name in reserved if rows[name].chart.startswith("settings.")]
    assert not wrong, f"reserved in the chart, yet the reference says settings.<name>: {wrong}"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("  STREAMER_A: {{ .Values.kafka.a | quote }}", {"STREAMER_A": "kafka.a"}),
        (
            "  {{- with .Values.b.c }}\n  STREAMER_B: {{ . | quote }}\n  {{- end }}",
            {"STREAMER_B": "b.c"},
        ),
        ('  STREAMER_P: {{ include "h.props" . | quote }}', {"STREAMER_P": "kafka.properties"}),
        ('  STREAMER_Q: {{ include "h.none" . | quote }}', {}),
        (
            "{{- if .Values.redis.existingSecret }}\n- name: STREAMER_R\n  valueFrom:\n"
            "    secretKeyRef:\n      name: {{ .Values.redis.existingSecret }}\n"
            "      key: {{ .Values.redis.passwordKey }}\n{{- end }}",
            {"STREAMER_R": "redis.existingSecret"},
        ),
        (
            "{{- if .Values.k.static }}\n# why\n- name: STREAMER_S\n  valueFrom:\n"
            "    fieldRef: {fieldPath: metadata.name}\n"
            "{{- else }}\n- name: STREAMER_S\n  value: ''\n{{- end }}",
            {"STREAMER_S": "k.static"},
        ),
        ("- name: {{ $name }}\n  STREAMER_T: plain", {}),
        (  # a literal value is the chart's own; a closed `if` says nothing about what follows
            "{{- if .Values.serve.publish }}\n- --publish\n{{- end }}\n"
            '- name: STREAMER_U\n  value: "8081"\n- name: STREAMER_V\n  valueFrom:\n'
            "    fieldRef: {fieldPath: metadata.name}",
            {},
        ),
    ],
)
def test_template_parser(template: str, expected: dict[str, str]) -> None:
    helpers = chart_values.helper_values(
        '{{- define "h.props" -}}\n{{- range $k, $v := .Values.kafka.properties }}'
        "{{- end }}\n{{- end }}"
    )
    assert chart_values.template_values(template, helpers) == expected


def test_values_comment_parser() -> None:
    text = (
        "# file header\n\ntop:\n  # -- first line\n  # second line\n  a: 1\n  b:\n"
        "    # -- deep\n    c: x\n  list:\n    - item\n  d: 2\nother: 3\n"
    )
    assert chart_values.value_comments(text) == {
        "top": "",
        "top.a": "first line second line",
        "top.b": "",
        "top.b.c": "deep",
        "top.list": "",
        "top.d": "",
        "other": "",
    }


class _WithSecrets(BaseModel):
    api_token: SecretStr | None = Field(None, description="a token")
    redis_url: str = Field("redis://h", description="has a value of its own in the chart")
    batch: int = Field(1, description="plain")


def test_secret_looking_settings_come_from_a_secret_in_the_chart() -> None:
    rows = {r.yaml_key: r.chart for r in reference.rows(_WithSecrets, chart=CHART)}
    assert rows == {
        "api_token": "secretEnv.STREAMER_API_TOKEN",
        "redis_url": "redis.url",
        "batch": "settings.batch",
    }
