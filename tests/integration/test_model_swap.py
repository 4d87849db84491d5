"""Model upgrades are a non-event for the stream, proven on the real broker and Redis with
``streamer run`` as a process: an alias moved with ``streamer models promote`` under a
steady 500 events/s is followed within seconds (at once on SIGHUP), the version switches at
one batch boundary, every input is scored exactly once, and the stream does not pause."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamer.dev.devstack.processes import free_port
from tests.integration.steady_run import (
    Run,
    exactly_once,
    log_append_topics,
    scrape,
    stream_with,
    swap_settings,
)
from tests.integration.streamer_proc import load_synthetic_features
from tests.integration.swap_helpers import (
    Output,
    assert_one_switch,
    longest_stall_ms,
    now_ms,
    private_registry,
    promote,
)

NOTICE_MS = 10_000  # an alias change is followed within 10 s
SIGHUP_MS = 1_000  # "at once"
GAP_MS = 100  # no pause of the stream longer than this


@pytest.fixture
def fresh_topics(
    admin: AdminClient, make_topic: Callable[..., str], unique: str
) -> Iterator[Callable[[], dict[str, str]]]:
    """A new set of topics per run; the scored topic stamps LogAppendTime: gaps are measured
    by the broker."""
    made: list[Iterator[dict[str, str]]] = []

    def make() -> dict[str, str]:
        made.append(log_append_topics(admin, make_topic, unique, run=str(len(made))))
        return next(made[-1])

    yield make
    for topics in made:
        next(topics, None)  # deletes its scored topic


def test_alias_flipped_mid_stream_switches_once_without_loss_or_pause(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    fresh_topics: Callable[[], dict[str, str]],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    load_synthetic_features(redis_url, redis_prefix)

    def run_once(n: int) -> Pause:
        topics = fresh_topics()
        models_dir = private_registry(tmp_path / f"run{n}")
        promote(models_dir, "1")
        promoted: list[int] = []

        def flip(_: subprocess.Popen[bytes]) -> None:
            promoted.append(now_ms())
            promote(models_dir, "2")
            promoted.append(now_ms())

        group = f"{group_id}-{n}"
        settings = swap_settings({**run_settings, **topics, "group_id": group}, models_dir)
        log = tmp_path / f"streamer{n}.log"
        run = stream_with(kafka_bootstrap, topics, group, settings, log, flip)
        outputs = exactly_once(kafka_bootstrap, topics, run.sent)
        assert_one_switch(outputs, "1", "2")
        moved = (models_dir / "fraud-gbt" / "aliases.json").stat().st_mtime_ns // 1_000_000
        noticed = min(o.appended_ms for o in outputs if o.version == "2") - moved
        print(f"alias flip: first output of @2 {noticed} ms after the alias moved")
        assert 0 < noticed < NOTICE_MS, f"first output of @2 {noticed} ms after the alias moved"
        return pause(outputs, run, promoted[1], "2", "alias flip")

    assert_no_pause(run_once)


def test_sighup_follows_the_alias_at_once(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    fresh_topics: Callable[[], dict[str, str]],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    load_synthetic_features(redis_url, redis_prefix)

    def run_once(n: int) -> Pause:
        topics = fresh_topics()
        models_dir = private_registry(tmp_path / f"run{n}")  # champion is @2
        port = free_port()
        hup: list[int] = []

        def flip_then_hup(proc: subprocess.Popen[bytes]) -> None:
            promote(models_dir, "1")
            time.sleep(2.0)  # why: the hourly poll will not see it in 2 s: only SIGHUP can
            swaps = scrape(port)["streamer_model_swaps_total{}"]
            assert swaps == 0, "swapped before SIGHUP: the test would prove nothing"
            hup.append(now_ms())
            os.kill(proc.pid, signal.SIGHUP)

        group = f"{group_id}-{n}"
        settings = swap_settings(
            {**run_settings, **topics, "group_id": group},
            models_dir,
            model_watch_interval_s="3600",
            metrics_port=str(port),
        )
        log = tmp_path / f"streamer{n}.log"
        run = stream_with(kafka_bootstrap, topics, group, settings, log, flip_then_hup)
        outputs = exactly_once(kafka_bootstrap, topics, run.sent)
        assert_one_switch(outputs, "2", "1")
        noticed = min(o.appended_ms for o in outputs if o.version == "1") - hup[0]
        assert 0 < noticed < SIGHUP_MS, f"first output of @1 {noticed} ms after SIGHUP"
        return pause(outputs, run, hup[0], "1", "SIGHUP")

    assert_no_pause(run_once)


@dataclass(frozen=True)
class Pause:
    """The longest stall around a swap, and the longest elsewhere in the same run."""

    stall: int
    noise: int
    message: str


def pause(outputs: list[Output], run: Run, action_ms: int, new: str, label: str) -> Pause:
    """The longest stall from ``action_ms`` (or 1 s before the first output of the new
    version, if earlier: the watcher's load) to 1 s after that output, and the longest
    elsewhere in the steady run."""
    first_new = min(o.appended_ms for o in outputs if o.version == new)
    start, end = min(action_ms, first_new - 1000), first_new + 1000
    stall, at = longest_stall_ms(outputs, start, end)
    noise = max(
        longest_stall_ms(outputs, run.steady_ms, start)[0],
        longest_stall_ms(outputs, end, run.stopped_ms)[0],
    )
    message = (
        f"{label}: first output of @{new} {first_new - action_ms} ms after; longest stall "
        f"{stall} ms ({at - first_new:+} ms from the first @{new} output); "
        f"elsewhere in the run: {noise} ms"
    )
    print(message)
    return Pause(stall, noise, message)


def assert_no_pause(run_once: Callable[[int], Pause]) -> None:
    """No stall around the swap over GAP_MS more than the longest elsewhere in its run.

    The machine stalls the stream anyway (three test workers, each with its broker and
    Redis, on two cores: stalls of up to ~260 ms were seen away from any swap), and now and
    then its longest stall falls in the 2 s around the swap. A pause the swap causes
    happens on every run; so a run over the bound is followed by a second, on fresh topics,
    and the test fails when both are over it. Every run checks loss and duplicates whole."""
    runs = [run_once(0)]
    if runs[0].stall >= runs[0].noise + GAP_MS:
        runs.append(run_once(1))
    assert any(r.stall < r.noise + GAP_MS for r in runs), "the stream stalled around the swap " + (
        "; ".join(r.message for r in runs)
    )
