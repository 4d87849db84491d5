"""At the default settings the stream batches adaptively: an event arriving on an idle
stream is scored by itself, in the loop step that takes it, with no wait for a batch to
fill (``kafka.batching``), on the real broker and Redis."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Message

from streamer.config.settings import Settings
from streamer.dev.generator import send_synthetic
from streamer.kafka.batch import Batch
from streamer.service.assembly import build
from tests.integration.streamer_proc import REPO, read_all


def test_a_lone_event_on_an_idle_stream_is_scored_at_once_by_default(
    run_settings: dict[str, str],
) -> None:
    settings = Settings(**run_settings, models_dir=REPO / "models")  # type: ignore[arg-type]
    loop = build(settings).loop
    plan = loop._plan()
    assert plan.adaptive  # the default: no fill wait
    taken: list[int] = []
    process = loop.process

    def counted(messages: list[Message], **how: Any) -> Batch:
        taken.append(len(messages))
        return process(messages, **how)

    loop.process = counted  # type: ignore[method-assign]
    loop.subscribe()
    deadline = time.monotonic() + 30
    while not loop.stats.assigned and time.monotonic() < deadline:
        loop.step()  # joins the group; the input is empty, so nothing is taken
    assert loop.stats.assigned

    send_synthetic(
        bootstrap_servers=run_settings["kafka_bootstrap_servers"],
        topic=run_settings["input_topic"],
        count=1,
    )
    while not loop.stats.scored and time.monotonic() < deadline:
        loop.step()
    loop.publisher.flush(10)
    loop.consumer.close()

    assert taken == [1]  # a batch of the one event waiting, scored in the step that took it
    outputs = read_all(run_settings["kafka_bootstrap_servers"], run_settings["output_topic"], 1)
    assert len(outputs) == 1
