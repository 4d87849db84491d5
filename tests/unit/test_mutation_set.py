"""The mutation set's data and the driver's bookkeeping (tests/mutation/run.py), without
running mutmut: every mapped module and test exists, equivalents carry a reason and a line,
and scores exclude equivalents."""

from __future__ import annotations

from tests.mutation.run import (
    REPO,
    Module,
    Outcome,
    _added,
    _function,
    load_equivalents,
    load_modules,
)


def test_every_mapped_module_and_test_file_exists() -> None:
    modules = load_modules([])
    assert modules
    for module in modules:
        assert (REPO / module.path).is_file(), module.path
        assert module.tests, module.path
        for test in (*module.tests, *(d.split("::")[0] for d in module.deselect)):
            assert (REPO / test).is_file(), test


def test_every_equivalent_names_a_mapped_module_a_line_and_a_reason() -> None:
    prefixes = [m.path.removesuffix(".py").replace("/", ".") + "." for m in load_modules([])]
    for name, eq in load_equivalents().items():
        assert any(name.startswith(p) for p in prefixes), name
        assert eq.line.strip(), name
        assert eq.reason.strip(), name


def test_equivalents_are_matched_by_function_not_by_number() -> None:
    assert _function("streamer.kafka.commit.xǁExactlyOnceǁbegin__mutmut_12") == (
        "streamer.kafka.commit.xǁExactlyOnceǁbegin"
    )
    diff = "--- a\n+++ b\n-    x = 1\n+    x = 2\n"
    assert _added(diff) == "    x = 2"


def test_the_score_leaves_equivalents_out() -> None:
    outcome = Outcome(Module("streamer/x.py", ("tests/unit/test_x.py",)))
    outcome.statuses = {"a": "killed", "b": "timeout", "c": "survived", "d": "survived"}
    outcome.equivalent = ["d"]
    assert (outcome.killed, outcome.scored, outcome.survivors) == (2, 3, ["c"])
    assert round(outcome.percent, 1) == 66.7
