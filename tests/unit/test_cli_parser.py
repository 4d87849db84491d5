"""``streamer run`` is parsed by an app with that command alone: the same to its user."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamer.cli.app import app, parser


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--help"],
        ["run", "--bogus"],
        ["run", "extra"],
        ["run", "--config"],
        ["run", "--config", "/nonexistent/streamer.yaml", "--help"],
    ],
)
def test_run_alone_answers_as_the_whole_app(args: list[str]) -> None:
    alone = parser(args)
    assert alone is not app
    runner = CliRunner()
    got, expected = runner.invoke(alone, args), runner.invoke(app, args)
    assert (got.exit_code, got.output) == (expected.exit_code, expected.output)
    assert got.output  # something was said: help or a usage error


@pytest.mark.parametrize("args", [[], ["--help"], ["version"], ["--debug", "run"], ["runs"]])
def test_every_other_line_is_parsed_by_the_whole_app(args: list[str]) -> None:
    assert parser(args) is app
