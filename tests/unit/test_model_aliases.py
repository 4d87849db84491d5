"""Aliases resolve, promotions are verified, atomic and recorded, versions are never rewritten."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamer.errors import ModelError
from streamer.model.aliases import read_aliases
from streamer.model.promotion import promote
from streamer.model.registry import list_models, load_model, resolve
from streamer.model.versions import create_version, next_version

COMMITTED = Path(__file__).parents[2] / "models" / "fraud-gbt" / "1"


def _copy_version(models_dir: Path, version: str) -> Path:
    target = models_dir / "fraud-gbt" / version
    shutil.copytree(COMMITTED, target)
    meta = json.loads((target / "metadata.json").read_text())
    meta["version"] = version
    (target / "metadata.json").write_text(json.dumps(meta))
    return target


def _tamper(version_dir: Path) -> None:
    onnx = version_dir / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    for version in ("1", "2"):
        _copy_version(tmp_path, version)
    return tmp_path


def test_alias_resolves_to_its_version_and_moves_with_a_recorded_reason(registry: Path) -> None:
    clock = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    promote(registry, "fraud-gbt@1", alias="champion", reason="first", now=lambda: next(clock))
    assert resolve("fraud-gbt@champion", registry).parent.name == "1"
    change = promote(registry, "fraud-gbt@2", alias="champion", reason="better PR-AUC",
                     now=lambda: next(clock))  # fmt: skip
    assert (change.from_version, change.to_version) == ("1", "2")
    assert load_model("fraud-gbt@champion", registry).metadata.version == "2"
    raw = json.loads((registry / "fraud-gbt" / "aliases.json").read_text())
    assert raw["aliases"] == {"champion": "2"}
    assert [(h["alias"], h["from"], h["to"], h["reason"]) for h in raw["history"]] == [
        ("champion", None, "1", "first"),
        ("champion", "1", "2", "better PR-AUC"),
    ]
    assert raw["history"][1]["at"].startswith("2026-01-02")


def test_bare_name_and_explicit_version_ignore_aliases(registry: Path) -> None:
    promote(registry, "fraud-gbt@1", alias="champion")
    assert resolve("fraud-gbt", registry).parent.name == "2"
    assert resolve("fraud-gbt@1", registry).parent.name == "1"


def test_promote_by_alias_copies_the_pointer(registry: Path) -> None:
    promote(registry, "fraud-gbt@2", alias="challenger")
    promote(registry, "fraud-gbt@challenger", alias="champion", reason="challenger won")
    assert read_aliases(registry / "fraud-gbt").aliases == {"challenger": "2", "champion": "2"}


def test_unknown_alias_is_one_line_naming_the_known_ones(registry: Path) -> None:
    promote(registry, "fraud-gbt@1", alias="champion")
    promote(registry, "fraud-gbt@2", alias="challenger")
    with pytest.raises(ModelError) as info:
        resolve("fraud-gbt@champoin", registry)
    message = str(info.value)
    assert "\n" not in message
    assert "no version or alias 'champoin'" in message
    assert "aliases: challenger, champion" in message
    assert "versions: 1, 2" in message


def test_alias_to_a_deleted_version_says_so(registry: Path) -> None:
    promote(registry, "fraud-gbt@2", alias="champion")
    shutil.rmtree(registry / "fraud-gbt" / "2")
    with pytest.raises(ModelError, match="points at version 2, which does not exist"):
        resolve("fraud-gbt@champion", registry)


def test_promote_refuses_a_version_that_does_not_verify(registry: Path) -> None:
    promote(registry, "fraud-gbt@1", alias="champion", reason="baseline")
    _tamper(registry / "fraud-gbt" / "2")
    with pytest.raises(ModelError, match="sha256"):
        promote(registry, "fraud-gbt@2", alias="champion", reason="should not happen")
    aliases = read_aliases(registry / "fraud-gbt")
    assert aliases.aliases == {"champion": "1"}
    assert len(aliases.history) == 1


@pytest.mark.parametrize(
    ("spec", "alias", "reason", "message"),
    [
        ("fraud-gbt", "champion", "", "name the version"),
        ("fraud-gbt@1", "2", "", "start with a letter"),
        ("fraud-gbt@1", "../x", "", "start with a letter"),
        ("fraud-gbt@1", "champion", "two\nlines", "one line"),
        ("fraud-gbt@9", "champion", "", "versions: 1, 2"),
    ],
)
def test_promote_rejects_bad_requests(
    registry: Path, spec: str, alias: str, reason: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        promote(registry, spec, alias=alias, reason=reason)
    assert not (registry / "fraud-gbt" / "aliases.json").exists()


def test_promoting_to_the_same_version_records_nothing(registry: Path) -> None:
    promote(registry, "fraud-gbt@1", alias="champion")
    change = promote(registry, "fraud-gbt@1", alias="champion", reason="again")
    assert change.from_version == change.to_version == "1"
    assert len(read_aliases(registry / "fraud-gbt").history) == 1


def test_corrupt_aliases_file_is_a_one_line_error(registry: Path) -> None:
    (registry / "fraud-gbt" / "aliases.json").write_text('{"aliases": {"champion": 2')
    with pytest.raises(ModelError, match=r"aliases\.json cannot be read") as info:
        resolve("fraud-gbt@champion", registry)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match=r"aliases\.json"):
        promote(registry, "fraud-gbt@1", alias="champion")


def _promote_many(models_dir: str, worker: int, rounds: int) -> None:
    for i in range(rounds):
        version = "1" if (worker + i) % 2 else "2"
        promote(Path(models_dir), f"fraud-gbt@{version}", alias=f"a{worker}", reason=f"{i}")


def test_concurrent_promoters_lose_no_history(registry: Path) -> None:
    workers, rounds = 4, 6
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_promote_many, args=(str(registry), w, rounds)) for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    history = read_aliases(registry / "fraud-gbt").history
    # every round flips the worker's alias between versions, so every round is a change
    assert len(history) == workers * rounds
    for w in range(workers):
        mine = [h for h in history if h.alias == f"a{w}"]
        assert [h.reason for h in mine] == [str(i) for i in range(rounds)]
        assert all(a.to_version == b.from_version for a, b in itertools.pairwise(mine))


def test_list_models_verifies_each_version_and_shows_aliases(registry: Path) -> None:
    promote(registry, "fraud-gbt@1", alias="champion")
    promote(registry, "fraud-gbt@1", alias="stable")
    _tamper(registry / "fraud-gbt" / "2")
    one, two = list_models(registry)
    assert (one.version, one.aliases, one.problem) == ("1", ("champion", "stable"), None)
    assert two.metadata is not None  # readable, but must not be used
    assert two.problem is not None
    assert "sha256" in two.problem


def test_new_versions_never_rewrite_existing_ones(registry: Path) -> None:
    before = (registry / "fraud-gbt" / "2" / "metadata.json").read_bytes()
    assert next_version(registry / "fraud-gbt") == "3"

    def write(directory: Path, version: str) -> None:
        (directory / "marker").write_text(version)

    made = create_version(registry, "fraud-gbt", write)
    assert made == registry / "fraud-gbt" / "3"
    assert (made / "marker").read_text() == "3"
    with pytest.raises(ModelError, match="immutable"):
        create_version(registry, "fraud-gbt", write, version="2")
    assert (registry / "fraud-gbt" / "2" / "metadata.json").read_bytes() == before
    assert create_version(registry, "new-model", write).name == "1"


def test_a_failed_write_publishes_nothing(registry: Path) -> None:
    def explode(directory: Path, version: str) -> None:
        (directory / "model.onnx").write_bytes(b"half")
        raise RuntimeError("training crashed")

    with pytest.raises(RuntimeError):
        create_version(registry, "fraud-gbt", explode)
    assert sorted(p.name for p in (registry / "fraud-gbt").iterdir() if p.is_dir()) == ["1", "2"]
    assert resolve("fraud-gbt", registry).parent.name == "2"
