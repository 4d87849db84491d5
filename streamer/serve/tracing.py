"""Trace headers for the audit record of a request: the server span's, or the caller's.

With tracing on, the published ScoredEvent carries the request's SERVER span as its
``traceparent``, so a fraud service reading the scored topic joins the caller's trace.
With tracing off, the caller's own ``traceparent``/``tracestate`` pass through unchanged,
as the stream passes an input's headers through.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = ("traceparent", "tracestate")
TraceHeaders = list[tuple[str, str | bytes | None]] | None


def trace_tag(request_headers: Mapping[str, str]) -> TraceHeaders:
    """Kafka headers continuing the current request's trace, or None."""
    if get_current_span().get_span_context().is_valid:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        injected: TraceHeaders = [(k, v.encode()) for k, v in carrier.items()]
        return injected or None
    kept: TraceHeaders = [
        (k, request_headers[k].encode()) for k in _TRACE_HEADERS if request_headers.get(k)
    ]
    return kept or None
