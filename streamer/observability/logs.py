"""Structured logs: one JSON object per line on stderr, with the trace context when there is one.

structlog renders stdlib ``logging`` records, so librdkafka's and our modules' loggers all
come out the same way (``STREAMER_LOG_FORMAT=console`` for a human at a terminal).
Fields passed as ``extra={...}`` become fields of the line. librdkafka repeats the same
error for every retry (an unreachable broker: hundreds of lines); each distinct line is
shown once per ``REPEAT_WINDOW_S``. Nothing is logged per message at INFO.
"""

from __future__ import annotations

import logging
import sys
import time
from types import ModuleType
from typing import Any

from streamer.imports import without


def _structlog() -> ModuleType:
    """structlog without rich. structlog imports rich, when installed, for tracebacks it
    would draw; this module renders exceptions as plain text (``format_exc_info``), and
    rich would cost ``streamer run`` about 35 ms of start-up. rich is hidden only while
    structlog loads, so the commands that draw tables still import it."""
    with without("rich"):
        import structlog as loaded
    return loaded


structlog = _structlog()


def _add_trace_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """``trace_id``/``span_id`` of the current span, when a recording span is active."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


REPEAT_WINDOW_S = 30.0


class Deduplicate(logging.Filter):
    """Lets each distinct message through once per ``window_s`` (librdkafka's retries)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self._window_s = window_s
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka prefixes each line with the client's name and a changing counter;
        # what follows the last "]: " is the message itself.
        text = record.getMessage().rsplit("]: ", 1)[-1]
        now = time.monotonic()
        if now - self._seen.get(text, -self._window_s) < self._window_s:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[text] = now
        return True


def configure(level: str = "INFO", *, json: bool = True) -> None:
    """Route every stdlib logger through structlog's JSON (or console) renderer."""
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_context,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("httpx", "httpx2", "httpcore"):  # one INFO line per registry request
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    librdkafka = logging.getLogger("librdkafka")
    librdkafka.setLevel(max(logging.WARNING, root.level))
    if not any(isinstance(f, Deduplicate) for f in librdkafka.filters):
        librdkafka.addFilter(Deduplicate())
