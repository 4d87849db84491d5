"""HTTP metrics of the scoring API, on the same registry as the kernel's (the stream's names).

Request duration follows the OpenTelemetry HTTP metric (``http.server.request.duration``,
seconds) in Prometheus form; decisions are counted per event, statuses per request. Bucket
bounds are finer than the stream's: the authorization path lives in milliseconds.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class HttpMetrics:
    """Request latency, requests by status, API decisions by decision."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Time from request received to response sent, by route and status.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "streamer_serve_requests",
            "Scoring API requests by route and status, and protocol: v1, v2-rest (the Open "
            "Inference Protocol's /v2 routes) or v2-grpc (route: the RPC, status: its code).",
            ["http_route", "http_response_status_code", "protocol"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            "rpc_server_duration_seconds",
            "Time from gRPC request received to response, by method and status code.",
            ["rpc_method", "rpc_grpc_status_code"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "streamer_serve_decisions",
            "Events answered by the API, by decision (rejected: HTTP 422 or per-item error).",
            ["decision"],
            registry=registry,
        )

        # Labelled children by label values: ``labels()`` costs more than the observation.
        self._observed: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}
        self._decided: dict[str, Counter] = {}
        self._rpc: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered: its duration and its status."""
        key = (method, route, status)
        children = self._observed.get(key)
        if children is None:
            code = str(status)
            children = self._observed[key] = (
                self.duration.labels(method, route, code),
                self.requests.labels(route, code, "v2-rest" if route.startswith("/v2") else "v1"),
            )
        children[0].observe(seconds)
        children[1].inc()

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """One gRPC call (``method`` of inference.GRPCInferenceService) answered ``code``."""
        key = (method, code)
        children = self._rpc.get(key)
        if children is None:
            route = f"/inference.GRPCInferenceService/{method}"
            children = self._rpc[key] = (
                self.rpc_duration.labels(method, code),
                self.requests.labels(route, code, "v2-grpc"),
            )
        children[0].observe(seconds)
        children[1].inc()

    def decided(self, decision: str) -> None:
        """One event answered with ``decision`` (or ``rejected``)."""
        child = self._decided.get(decision)
        if child is None:
            child = self._decided[decision] = self.decisions.labels(decision)
        child.inc()
