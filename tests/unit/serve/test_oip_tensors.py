"""Open Inference Protocol tensors to events and back, without a server.

The promise: N-row tensors become the N event dicts /v1 builds (so the kernel sees the
same thing), raw and JSON encodings decode alike, and every malformed request is one
``TensorError`` naming the input, never an exception of another kind.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.errors import Rejection
from streamer.serve.oip.inference import InferResult
from streamer.serve.oip.outputs import output_tensors
from streamer.serve.oip.tensors import (
    Tensor,
    TensorError,
    decode_bytes,
    decode_events,
    encode_bytes,
    input_fields,
)
from streamer.serve.oip.wire import parse_rest, rest_response
from streamer.serve.schema import to_event, transaction_request
from streamer.testing import sample_event


def _events(n: int) -> list[dict[str, Any]]:
    return [sample_event(transaction_id=f"tx-{i}", amount_minor=100 + i) for i in range(n)]


def _json_tensors(events: list[dict[str, Any]]) -> list[Tensor]:
    return [
        Tensor(f.name, f.datatype, (len(events),), data=[e[f.name] for e in events])
        for f in input_fields()
        if all(e[f.name] is not None for e in events)
    ]


def _raw_tensors(events: list[dict[str, Any]]) -> list[Tensor]:
    out = []
    for tensor in _json_tensors(events):
        assert tensor.data is not None
        if tensor.datatype == "BYTES":
            raw = encode_bytes([v.encode() for v in tensor.data])
        else:
            kind = {"BOOL": "?", "INT32": "<i4", "INT64": "<i8"}[tensor.datatype]
            raw = np.asarray(tensor.data, dtype=kind).tobytes()
        out.append(Tensor(tensor.name, tensor.datatype, tensor.shape, raw=raw))
    return out


def test_tensors_give_the_events_v1_builds() -> None:
    events = _events(3)
    v1 = [to_event(transaction_request().model_validate(e)) for e in events]
    assert decode_events(_json_tensors(events), 10) == v1
    assert decode_events(_raw_tensors(events), 10) == v1


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_bytes_elements_round_trip(values: list[bytes]) -> None:
    assert decode_bytes(encode_bytes(values), "x") == values


def _replace(tensors: list[Tensor], name: str, **changes: Any) -> list[Tensor]:
    return [Tensor(**{**vars(t), **changes}) if t.name == name else t for t in tensors]


BASE = _json_tensors(_events(2))


@pytest.mark.parametrize(
    ("tensors", "names"),
    [
        (_replace(BASE, "mcc", datatype="FP32"), "'mcc'"),
        (_replace(BASE, "mcc", shape=(3,)), "'mcc'"),
        (_replace(BASE, "mcc", shape=(2, 1)), "'mcc'"),
        (_replace(BASE, "mcc", data=[5411]), "'mcc'"),
        (_replace(BASE, "mcc", data=[5411, 2**40]), "'mcc'"),
        (_replace(BASE, "mcc", data=[5411, True]), "'mcc'"),
        (_replace(BASE, "card_present", data=[1, 0]), "'card_present'"),
        (_replace(BASE, "channel", data=["POS", "SPACE"]), "'channel' row 1"),
        (_replace(BASE, "currency", data=["EUR", 5]), "'currency' row 1"),
        (_replace(BASE, "currency", data=None, raw=b"\x05\x00\x00\x00EU"), "'currency'"),
        (_replace(BASE, "currency", data=None, raw=b"\xff\xfe"), "'currency'"),
        (_replace(BASE, "amount_minor", data=None, raw=b"\x00" * 15), "'amount_minor'"),
        ([t for t in BASE if t.name != "card_id"], "'card_id' is required"),
        ([*BASE, BASE[0]], "given twice"),
        ([*BASE, Tensor("nope", "BYTES", (2,), data=["a", "b"])], "'nope'"),
        ([], "no inputs"),
    ],
)
def test_malformed_tensors_are_one_error_naming_the_input(
    tensors: list[Tensor], names: str
) -> None:
    with pytest.raises(TensorError, match=names):
        decode_events(tensors, 10)


def test_more_rows_than_allowed_is_refused() -> None:
    with pytest.raises(TensorError, match="between 1 and 1"):
        decode_events(BASE, 1)


def test_left_out_optional_fields_take_their_defaults() -> None:
    events = decode_events([t for t in BASE if t.name not in ("entry_mode", "device_id")], 10)
    assert [(e["entry_mode"], e["device_id"]) for e in events] == [("UNKNOWN", None)] * 2


def _binary_request(tensors: list[Tensor], body: dict[str, Any]) -> tuple[bytes, str]:
    inputs, blobs = [], []
    for t in tensors:
        assert t.raw is not None
        inputs.append(
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "parameters": {"binary_data_size": len(t.raw)},
            }
        )
        blobs.append(t.raw)
    header = orjson.dumps({**body, "inputs": inputs})
    return header + b"".join(blobs), str(len(header))


def test_rest_binary_extension_decodes_as_json_does() -> None:
    events = _events(2)
    body, length = _binary_request(_raw_tensors(events), {"id": "r"})
    parsed = parse_rest(body, length)
    assert parsed.id == "r"
    assert decode_events(parsed.inputs, 10) == decode_events(_json_tensors(events), 10)
    with pytest.raises(TensorError, match="belong to no input"):
        parse_rest(body + b"x", length)
    with pytest.raises(TensorError, match="runs past"):
        parse_rest(body[:-1], length)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"inputs": 3}', b'{"inputs": [{"name": 1}]}', b'{"id": 5, "inputs": []}'],
)
def test_malformed_rest_bodies_are_tensor_errors(body: bytes) -> None:
    with pytest.raises(TensorError):
        parse_rest(body, None)


def test_rejected_rows_keep_their_place_and_binary_outputs_decode() -> None:
    scored = {"transaction_id": "a", "score": 0.25, "decision": "APPROVE"}
    rejected = Rejection("AmountNotPositive", "amount_minor must be positive", "validate")
    tensors = output_tensors([scored, rejected], ["a", "b"], ["score", "decision", "error_class"])
    assert tensors[1].values == ["APPROVE", "REJECTED"]
    assert tensors[2].values == ["", "AmountNotPositive"]
    result = InferResult("fraud-gbt", "2", "", tensors)
    body, length = rest_response(result, True)
    header = orjson.loads(body[:length])
    size = header["outputs"][0]["parameters"]["binary_data_size"]
    score = np.frombuffer(body[length : length + size], dtype="<f8")
    assert score[0] == 0.25
    assert math.isnan(score[1])
    json_body, none = rest_response(result, frozenset())
    assert none == 0
    assert orjson.loads(json_body)["outputs"][0]["data"] == [0.25, None]
    assert struct.unpack_from("<I", body, length + size)[0] == len("APPROVE")
