"""CPU per event of the stream's own loop (decode, validate, score, publish), not the broker.

``make bench`` drains a backlog through the whole stack, where on a shared 2-core VM a
few µs per event of the loop's own work are lost in the noise of the broker and Redis.
This builds the stream as ``streamer run`` does (``service.assembly.build``: the real
producer, feature cache and observers, against the dev stack), feeds ``StreamLoop.process``
the same consumed batches over and over from memory (no consumer), and reports the median
CPU time per event of a batch, overall and by stage (the stages' share from the metrics'
stage histograms). ``--profile`` prints cProfile's top functions as well.

    make dev-up; source .dev/env
    python bench/drain_glue.py --batches 200 --batch 430 --set STREAMER_REASONS=off

``--overlap`` hands each batch to the loop as a backlog's full batch: its reasons are found
in the explainer thread while the next batch is scored, so the loop's thread's CPU per
event is what bounds a drain.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from confluent_kafka import Message  # noqa: E402

from streamer.codec.schemas import transaction_schema  # noqa: E402
from streamer.codec.wire import make_encoder  # noqa: E402
from streamer.config.loader import load_settings  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402
from streamer.service.assembly import build  # noqa: E402


def _batches(topic: str, n_batches: int, size: int) -> list[list[Message]]:
    """Consumed messages as the bench's backlog holds them: single-object values, the
    card as key, a traceparent header each, in runs of a partition (as a fetch gives them):
    three runs a batch."""
    events = generate_events(make_population(7, 200_000), n_batches * size, seed=101, start_ms=0)
    encoder = make_encoder("single-object", schema=transaction_schema())
    now = time.time_ns() // 1_000_000
    run = -(-size // 3)
    header = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-00")]
    messages = [
        Message(
            topic=topic,
            partition=(i // run) % 3,
            offset=i,
            key=event["card_id"].encode(),
            value=encoder.encode({**event, "event_time": now}),
            headers=header,
            timestamp=(1, now),
        )
        for i, event in enumerate(events)
    ]
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=430)
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="as a backlog runs: each batch's reasons found while the next one is scored",
    )
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for streamer")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    os.environ.update(
        {
            "STREAMER_INPUT_TOPIC": f"glue-{tag}-in",
            "STREAMER_OUTPUT_TOPIC": f"glue-{tag}-out",
            "STREAMER_GROUP_ID": f"glue-{tag}",
            "STREAMER_LOG_LEVEL": "WARNING",
            "STREAMER_MODELS_DIR": str(REPO / "models"),
            **dict(item.split("=", 1) for item in args.set),
        }
    )
    settings = load_settings()
    load_command(redis.Redis.from_url(os.environ["STREAMER_REDIS_URL"]), prefix="", file=None)
    service = build(settings)
    loop = service.loop
    batches = _batches(settings.input_topic, args.batches, args.batch)
    for batch in batches[:5]:  # warm: schema registry, model, allocations
        loop.process(batch)
        loop.publisher.flush(10)
    for hist in service.telemetry.stages.values():
        hist.counts[:] = 0
        hist.total = 0.0
    profiler = cProfile.Profile() if args.profile else None
    per_event: list[float] = []
    main_thread: list[float] = []
    for batch in batches[5:]:
        started, started_thread = time.process_time(), time.thread_time()
        if profiler is not None:
            profiler.enable()
        loop.process(batch, overlap=args.overlap)
        loop.publisher.poll(0)
        if profiler is not None:
            profiler.disable()
        per_event.append((time.process_time() - started) / len(batch) * 1e6)
        main_thread.append((time.thread_time() - started_thread) / len(batch) * 1e6)
        loop.publisher.flush(10)  # outside the timing: the broker's pace, not the loop's
        loop.commits.tick()
    loop.finish_pending()
    events = sum(len(b) for b in batches[5:])
    print(
        f"{len(per_event)} batches of {args.batch}: median {statistics.median(per_event):.2f}"
        f" µs CPU/event (mean {statistics.fmean(per_event):.2f}), of which the loop's thread"
        f" {statistics.median(main_thread):.2f}"
    )
    for name, hist in service.telemetry.stages.items():
        if hist.total:
            print(f"  {name:15s} {hist.total / events * 1e6:6.2f} µs/event (wall)")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(70)


if __name__ == "__main__":
    main()
