"""``streamer run``: build the stream from settings, check dependencies, run until told to stop.

Start-up overlaps its slow parts. The consumer is built first and asks to join its group
(``kafka.membership``): the join's round trips run in librdkafka's threads while this
module imports and checks the rest, as do the stream's producer's (its connection and
producer id: one produced before them waits for them, tens of milliseconds). The topics
are checked on a thread (a network wait), the model is read and checked (``open_model``:
a wrong spec, file or signature stops it at once, exit 2) and its last check, the
explainer against the ONNX model on the reference rows, runs on a thread while the rest
of the stream is imported, built and checked (``startup``). Nothing is consumed before
every check passed; when one fails, the consumer is closed and start-up stops with its
one-line error.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.config.settings import Settings
    from streamer.observability.health import OpsServer
    from streamer.service.assembly import Service

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT; a second signal while draining is reported, not fatal."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int = 0, frame: FrameType | None = None) -> None:
        if self._event.is_set():
            log.warning("already stopping: draining in-flight outputs")
        else:
            log.info("stop requested (signal %s): finishing in-flight work", signum)
        self._event.set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)


def run(settings: Settings, stop: StopFlag | None = None) -> dict[str, Any]:
    """Check dependencies, then score until stopped. Returns the loop's final counters."""
    stop = stop or StopFlag()
    stop.install()  # first: a SIGTERM during start-up is a clean stop, not a kill
    from streamer.service import heap

    with heap.start_up():
        service, ops = _start(settings)
    log.info("effective settings", extra={"settings": settings.redacted()})
    meta, shadow = service.model.metadata, service.kernel.shadow
    shadow_name = f"{shadow.stamp.name}@{shadow.stamp.version}" if shadow else "none"
    log.info(
        "scoring %s -> %s with model %s@%s (spec %s), shadow %s (group %s, %s)",
        settings.input_topic,
        settings.output_topic,
        meta.name,
        meta.version,
        settings.model,
        f"{shadow_name} (spec {settings.shadow_model})" if shadow else "none",
        settings.group_id,
        settings.processing_guarantee,
        extra={"model": f"{meta.name}@{meta.version}", "shadow_model": shadow_name},
    )
    service.models.start()
    try:
        service.loop.run(stop)
    finally:
        service.models.stop()
        ops.close()
        if service.tracer_provider is not None:
            service.tracer_provider.shutdown()  # flushes spans still queued for export
    stats = service.loop.stats
    log.info(
        "stopped: %d consumed, %d scored, %d dead-lettered",
        stats.consumed,
        stats.scored,
        stats.dead_lettered,
    )
    return {
        "consumed": stats.consumed,
        "scored": stats.scored,
        "dead_lettered": stats.dead_lettered,
    }


def _start(settings: Settings) -> tuple[Service, OpsServer]:
    """Join, check and build, overlapped (module docstring); on failure, nothing is left
    open and the one-line error is raised."""
    from streamer.clients import Clients
    from streamer.kafka.config import STREAM_PRODUCER
    from streamer.kafka.membership import Membership
    from streamer.service.checks import check_topics

    clients = Clients(settings)
    membership = Membership(clients.consumer(), settings.input_topic)
    membership.join()  # in librdkafka's threads, beside everything below
    with ThreadPoolExecutor(2, thread_name_prefix="start-up") as pool:
        try:
            producer = clients.producer(**STREAM_PRODUCER)  # connects meanwhile, too
            topics = pool.submit(check_topics, clients.admin(), settings, clients.errors)
            from streamer.model.registry import open_model

            model, last_check = open_model(settings.models.spec, settings.models.models_dir)
            checked = pool.submit(last_check)  # beside the imports and the build below
            from streamer.service import startup
        except BaseException:
            membership.abandon()
            raise
        service, ops = startup.start(settings, model, clients, membership, producer, topics.result)
        try:
            checked.result()  # the model's ModelError, before anything is scored
        except BaseException:
            startup.abandon(membership, ops)
            raise
    return service, ops
