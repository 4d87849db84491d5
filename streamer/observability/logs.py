"""Structured logs: one JSON object per line on stderr, with the trace context when there is one.

structlog renders stdlib ``logging`` records, so librdkafka's and our modules' loggers all
come out the same way. Nothing is logged per message at INFO.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def _add_trace_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """``trace_id``/``span_id`` of the current span, when a recording span is active."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def configure(level: str = "INFO", *, json: bool = True) -> None:
    """Route every stdlib logger through structlog's JSON (or console) renderer."""
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
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
    logging.getLogger("librdkafka").setLevel(max(logging.WARNING, root.level))
