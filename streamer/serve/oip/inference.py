"""What REST and gRPC share: the model's metadata, its versions and one inference.

Both transports decode their tensors to ``tensors.Tensor``, call ``infer``, and write the
``InferResult`` in their own encoding, so the two cannot drift apart. An inference is one
``Batcher.submit`` of the request's N events: scored in one kernel batch (merged with
whatever other requests, /v1 included, are queued with it), published to the audit topic
with ``--publish`` exactly as /v1's, and counted in the same decision metric.

Versions: the version the kernel scores with now, and any name that resolves to it: the
alias the model spec follows (``fraud-gbt@champion`` → ``champion``) and the registry's
aliases pointing at that version. Any other version is not loaded here: ``ModelNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from streamer import __version__
from streamer.errors import Rejection
from streamer.model.registry import list_models
from streamer.serve.oip.outputs import OUTPUTS, OutputTensor, output_tensors, unknown_outputs
from streamer.serve.oip.tensors import Tensor, TensorError, decode_events, input_fields
from streamer.serve.responses import DEGRADED_REFUSED
from streamer.serve.runtime import Runtime

SERVER_NAME = "streamer"
PLATFORM = "onnxruntime_onnx"


class ModelNotFoundError(LookupError):
    """A model or version this server does not serve (HTTP 404, gRPC NOT_FOUND)."""


class FeaturesUnavailableError(RuntimeError):
    """Features unreachable with STREAMER_REDIS_REQUIRED (HTTP 503, gRPC UNAVAILABLE)."""


@dataclass(frozen=True)
class InferRequest:
    model_name: str
    model_version: str
    id: str
    inputs: Sequence[Tensor]
    outputs: Sequence[str]


@dataclass(frozen=True)
class InferResult:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": []}


def _spec_alias(spec: str) -> str | None:
    name = spec.rsplit("/", 1)[-1]
    return name.split("@", 1)[1] if "@" in name else None


async def versions(runtime: Runtime) -> list[str]:
    """The version scoring now, then the aliases that name it (spec's first)."""
    stamp = runtime.kernel.stamp
    names = [stamp.version]
    alias = _spec_alias(runtime.settings.model)
    if alias:
        names.append(alias)
    entries = await run_in_threadpool(list_models, runtime.settings.models_dir)
    for entry in entries:
        if entry.name == stamp.name and entry.version == stamp.version:
            names.extend(a for a in entry.aliases if a not in names)
    return names


async def resolve(runtime: Runtime, name: str, version: str) -> None:
    """``ModelNotFoundError`` unless ``name`` (and ``version``, when given) is what scores here."""
    stamp = runtime.kernel.stamp
    if name != stamp.name:
        raise ModelNotFoundError(
            f"model '{name}' is not served here (this server serves '{stamp.name}')"
        )
    if version and version != stamp.version and version not in await versions(runtime):
        raise ModelNotFoundError(
            f"version '{version}' of model '{name}' is not loaded (serving version {stamp.version})"
        )


async def model_metadata(runtime: Runtime, name: str, version: str) -> dict[str, Any]:
    await resolve(runtime, name, version)
    return {
        "name": runtime.kernel.stamp.name,
        "versions": await versions(runtime),
        "platform": PLATFORM,
        "inputs": [{"name": f.name, "datatype": f.datatype, "shape": [-1]} for f in input_fields()],
        "outputs": [{"name": n, "datatype": d, "shape": [-1]} for n, d in OUTPUTS],
    }


async def infer(runtime: Runtime, request: InferRequest, tag: Any) -> InferResult:
    """Score the request's rows as one batch; its outputs (``TensorError``, ``ModelNotFoundError``,
    ``FeaturesUnavailableError`` when it cannot be answered)."""
    await resolve(runtime, request.model_name, request.model_version)
    unknown = unknown_outputs(request.outputs)
    if unknown:
        raise TensorError(f"output '{unknown[0]}' is not an output of this model")
    events = decode_events(request.inputs, runtime.options.max_request_events)
    outcomes = await runtime.batcher.submit(events, tag)
    decided = runtime.http.decided
    version = runtime.kernel.stamp.version
    for outcome in outcomes:
        if isinstance(outcome, Rejection):
            decided("rejected")
            continue
        if runtime.settings.redis_required and outcome["feature_status"] == "DEGRADED":
            raise FeaturesUnavailableError(DEGRADED_REFUSED.message)
        version = outcome["model_version"]
        decided(outcome["decision"])
    ids = [e["transaction_id"] for e in events]
    tensors = output_tensors(outcomes, ids, request.outputs)
    return InferResult(runtime.kernel.stamp.name, version, request.id, tensors)
