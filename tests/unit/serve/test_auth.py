"""API keys: the file's problems are one line; only listed keys pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.errors import ConfigError
from streamer.serve.auth import allowed, presented_key, read_api_keys

KEY = "k" * 24


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "no key"), ("# only a comment\n", "no key"), ("short\n", "shorter than")],
)
def test_bad_key_files_say_what_to_change(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem) as caught:
        read_api_keys(path)
    assert "short" not in str(caught.value).split(":", 1)[0]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_api_keys(tmp_path / "nope")


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "ok"),
    [
        (f"Bearer {KEY}", None, True),
        (f"bearer {KEY}", None, True),
        (None, KEY, True),
        (f"Basic {KEY}", None, False),
        ("Bearer ", None, False),
        (None, None, False),
        (f"Bearer {KEY}x", None, False),
        ("Bearer \udcff", None, False),
    ],
)
def test_only_listed_keys_pass(
    tmp_path: Path, authorization: str | None, x_api_key: str | None, ok: bool
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# comment\n{KEY}\n")
    digests = read_api_keys(path)
    assert KEY not in digests  # only digests are kept
    assert allowed(presented_key(authorization, x_api_key), digests) is ok


def test_no_keys_configured_means_open() -> None:
    assert allowed(None, frozenset())
