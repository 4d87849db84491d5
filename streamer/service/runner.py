"""``streamer run``: build the stream from settings, check dependencies, run until told to stop.

Start-up overlaps its slow parts. The model is read and checked first (``open_model``: a
wrong spec, file or signature stops it at once, exit 2); its last check, the explainer
against the ONNX model on the reference rows, runs in C on a thread while this module
imports the rest of the stream, builds and checks it and joins the consumer group
(``startup``). Nothing is scored before that check passed; when it fails, the consumer
is closed and start-up stops with its ``ModelError`` (exit 2).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any

from streamer.model.registry import open_model

if TYPE_CHECKING:
    from streamer.config.settings import Settings

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
    model, last_check = open_model(settings.models.spec, settings.models.models_dir)
    with ThreadPoolExecutor(1, thread_name_prefix="model-check") as pool:
        checked = pool.submit(last_check)  # C without the GIL: beside the imports below
        from streamer.service import heap, startup

        service, ops = startup.start(settings, model)
        try:
            heap.settle()  # after start-up: the collector never walks what it built again
            checked.result()  # the model's ModelError, before anything is scored
        except BaseException:
            startup.abandon(service, ops)
            raise
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
