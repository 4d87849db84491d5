"""The REST encoding of an inference: JSON, optionally followed by raw tensor bytes. Pure.

The binary tensor extension (Triton's, used by tritonclient.http by default): the body is a
JSON header of ``Inference-Header-Content-Length`` bytes, then each binary input's raw
content in the order of ``inputs``, each input naming its size in
``parameters.binary_data_size``. Responses use it for the outputs the request asks binary
(``parameters.binary_data`` on an output, or ``binary_data_output`` on the request).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from streamer.serve.oip.inference import InferResult
from streamer.serve.oip.outputs import OutputTensor
from streamer.serve.oip.tensors import Tensor, TensorError, encode_bytes


@dataclass(frozen=True)
class RestRequest:
    id: str
    inputs: list[Tensor]
    outputs: list[str]
    binary: frozenset[str] | bool  # outputs to send raw; True: all of them


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TensorError(f"{what} must be a JSON object")
    return value


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or any(d.__class__ is not int or d < 0 for d in raw):
        raise TensorError(f"input '{name}': shape must be a list of non-negative integers")
    return tuple(raw)


def _inputs(items: Any, binary: bytes) -> list[Tensor]:
    if not isinstance(items, list):
        raise TensorError("inputs must be a list of tensors")
    tensors, offset = [], 0
    for raw in items:
        item = _object(raw, "each input")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise TensorError("each input needs a name and a datatype (strings)")
        shape = _shape(item.get("shape"), name)
        size = _object(item.get("parameters") or {}, f"input '{name}': parameters").get(
            "binary_data_size"
        )
        if size is None:
            if "data" not in item:
                raise TensorError(f"input '{name}': no data and no binary_data_size")
            tensors.append(Tensor(name, datatype, shape, data=item["data"]))
            continue
        if size.__class__ is not int or size < 0 or offset + size > len(binary):
            raise TensorError(f"input '{name}': binary_data_size runs past the body")
        tensors.append(Tensor(name, datatype, shape, raw=binary[offset : offset + size]))
        offset += size
    if offset != len(binary):
        raise TensorError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def _outputs(items: Any) -> tuple[list[str], set[str]]:
    if items is None:
        return [], set()
    if not isinstance(items, list):
        raise TensorError("outputs must be a list")
    names, binary = [], set()
    for raw in items:
        item = _object(raw, "each output")
        name = item.get("name")
        if not isinstance(name, str):
            raise TensorError("each output needs a name (a string)")
        names.append(name)
        if _object(item.get("parameters") or {}, f"output '{name}'").get("binary_data"):
            binary.add(name)
    return names, binary


def parse_rest(body: bytes, header_length: str | None) -> RestRequest:
    """The request in ``body``; ``TensorError`` saying what is malformed."""
    split = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise TensorError("Inference-Header-Content-Length is not a length within the body")
        split = int(header_length)
    try:
        document = _object(orjson.loads(body[:split]), "the request")
    except orjson.JSONDecodeError:
        raise TensorError("the request is not JSON") from None
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise TensorError("id must be a string")
    parameters = _object(document.get("parameters") or {}, "parameters")
    names, binary = _outputs(document.get("outputs"))
    wanted: frozenset[str] | bool = frozenset(binary)
    if not names and parameters.get("binary_data_output") is True:
        wanted = True
    inputs = _inputs(document.get("inputs"), body[split:])
    return RestRequest(request_id, inputs, names, wanted)


def _raw(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        return encode_bytes([str(v).encode() for v in tensor.values])
    return np.asarray(tensor.values, dtype="<f8").tobytes()


def _json_values(tensor: OutputTensor) -> list[Any]:
    if tensor.datatype == "FP64":
        return [None if math.isnan(v) else v for v in tensor.values]
    return tensor.values


def rest_response(result: InferResult, binary: frozenset[str] | bool) -> tuple[bytes, int]:
    """The response body, and the JSON header's length when raw outputs follow it (else 0)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in result.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": [len(tensor.values)],
        }
        if binary is True or (not isinstance(binary, bool) and tensor.name in binary):
            blob = _raw(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_values(tensor)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "outputs": outputs,
    }
    if result.id:
        document["id"] = result.id
    header = orjson.dumps(document)
    return (header + b"".join(blobs), len(header)) if blobs else (header, 0)
