"""``inference.GRPCInferenceService`` on ``STREAMER_SERVE_GRPC_PORT``, on the API's event loop.

A ``grpc.aio`` server started in the app's lifespan, so its handlers run on the same loop
as the HTTP routes and submit to the same batcher: a gRPC request and a /v1 request queued
together are scored in one kernel batch. Errors are status codes with the REST message:
INVALID_ARGUMENT (names the input), NOT_FOUND, UNAUTHENTICATED (the API keys of /v1, from
``authorization: Bearer`` or ``x-api-key`` metadata), UNAVAILABLE. ``traceparent`` metadata
continues the caller's trace, as the HTTP header does; a message above --max-body-bytes is
refused by gRPC itself (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import grpc
import numpy as np
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamer.errors import ConfigError
from streamer.serve import auth
from streamer.serve.oip import grpc_predict_v2_pb2 as pb
from streamer.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from streamer.serve.oip import inference
from streamer.serve.oip.inference import (
    FeaturesUnavailableError,
    InferRequest,
    InferResult,
    ModelNotFoundError,
)
from streamer.serve.oip.outputs import OutputTensor
from streamer.serve.oip.tensors import Tensor, TensorError, encode_bytes
from streamer.serve.runtime import Runtime
from streamer.serve.tracing import trace_tag

SERVICE = "inference.GRPCInferenceService"
_PROPAGATOR = TraceContextTextMapPropagator()
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ERRORS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (TensorError, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (FeaturesUnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def _tensors(request: Any) -> list[Tensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise TensorError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: one per input"
        )
    tensors = []
    for i, item in enumerate(request.inputs):
        shape = tuple(item.shape)
        if raw:
            tensors.append(Tensor(item.name, item.datatype, shape, raw=raw[i]))
            continue
        field = _CONTENTS.get(item.datatype)
        if field is None:
            raise TensorError(f"input '{item.name}': datatype {item.datatype} is not supported")
        tensors.append(Tensor(item.name, item.datatype, shape, data=getattr(item.contents, field)))
    return tensors


def _raw(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        return encode_bytes([str(v).encode() for v in tensor.values])
    return np.asarray(tensor.values, dtype="<f8").tobytes()


def _response(result: InferResult) -> Any:
    reply = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=result.id
    )
    for tensor in result.outputs:
        reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=[len(tensor.values)])
        reply.raw_output_contents.append(_raw(tensor))
    return reply


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's six RPCs over the serving runtime."""

    def __init__(self, runtime: Runtime, tracer: Tracer | None) -> None:
        self.runtime = runtime
        self.tracer = tracer

    async def _call(
        self, method: str, context: Any, work: Callable[[dict[str, str]], Awaitable[Any]]
    ) -> Any:
        started, code = time.perf_counter(), grpc.StatusCode.OK
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        span: Any = nullcontext()
        if self.tracer is not None:
            span = self.tracer.start_as_current_span(
                f"{SERVICE}/{method}",
                context=_PROPAGATOR.extract(metadata),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method},
            )
        try:
            with span:
                return await work(metadata)
        except tuple(kind for kind, _ in _ERRORS) as exc:
            code = next(c for kind, c in _ERRORS if isinstance(exc, kind))
            await context.abort(code, str(exc))
        except PermissionError as exc:
            code = grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(exc))
        finally:
            self.runtime.http.observe_rpc(method, code.name, time.perf_counter() - started)

    def _ready(self) -> bool:
        return self.runtime.batcher.running and self.runtime.model_present()

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(_: dict[str, str]) -> Any:
            return pb.ServerLiveResponse(live=self.runtime.batcher.running)

        return await self._call("ServerLive", context, work)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(_: dict[str, str]) -> Any:
            return pb.ServerReadyResponse(ready=self._ready())

        return await self._call("ServerReady", context, work)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(_: dict[str, str]) -> Any:
            await inference.resolve(self.runtime, request.name, request.version)
            return pb.ModelReadyResponse(ready=self._ready())

        return await self._call("ModelReady", context, work)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(_: dict[str, str]) -> Any:
            return pb.ServerMetadataResponse(**inference.server_metadata())

        return await self._call("ServerMetadata", context, work)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(_: dict[str, str]) -> Any:
            meta = await inference.model_metadata(self.runtime, request.name, request.version)
            return pb.ModelMetadataResponse(**meta)

        return await self._call("ModelMetadata", context, work)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work(metadata: dict[str, str]) -> Any:
            keys = self.runtime.options.api_keys
            key = auth.presented_key(metadata.get("authorization"), metadata.get("x-api-key"))
            if keys and not auth.allowed(key, keys):
                raise PermissionError("missing or unknown API key")
            outputs = [o.name for o in request.outputs]
            call = InferRequest(
                request.model_name, request.model_version, request.id, _tensors(request), outputs
            )
            result = await inference.infer(self.runtime, call, trace_tag(metadata))
            return _response(result)

        return await self._call("ModelInfer", context, work)


async def start(runtime: Runtime, tracer: Tracer | None) -> grpc.aio.Server | None:
    """The gRPC server on ``STREAMER_SERVE_GRPC_PORT`` (None when it is 0), started."""
    port = runtime.settings.serve_grpc_port
    if not port:
        return None
    limit = runtime.options.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(runtime, tracer), server)  # type: ignore[no-untyped-call]
    host = runtime.options.host
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError:
        raise ConfigError(
            f"cannot listen for gRPC on {address}; choose another STREAMER_SERVE_GRPC_PORT"
        ) from None
    await server.start()
    return server
