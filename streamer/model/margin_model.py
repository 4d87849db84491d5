"""An ONNX tree ensemble's margin model: the same file with its logistic taken off.

The explainer check (``model.explainer``) compares LightGBM's margin with the ONNX
model's, which ONNX Runtime gives for the same model with ``post_transform`` ``NONE``.
The change is one string three messages deep (``ModelProto.graph`` > ``node`` >
``attribute``), made here on the protobuf wire format: the ``onnx`` package would do it
at the price of its import, about 50 ms of every start-up's model check. Every other byte
is copied as it is; only the three enclosing lengths are written again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from streamer.errors import ModelError

MODEL_GRAPH, GRAPH_NODE, NODE_OP_TYPE, NODE_ATTRIBUTE = 7, 1, 4, 5
ATTRIBUTE_NAME, ATTRIBUTE_S = 1, 4
_LEN = 2
_FIXED = {1: 8, 5: 4}  # wire type: bytes (i64, i32)

Field = tuple[int, int, bytes, memoryview]
"""(field number, wire type, the tag and any length as read, the value's bytes)."""


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(message: memoryview) -> Iterator[Field]:
    """A message's fields in order (``ValueError`` for bytes that are not one)."""
    at = 0
    while at < len(message):
        start = at
        tag, at = _varint(message, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            end = _varint(message, at)[1]
        elif wire == _LEN:
            size, at = _varint(message, at)  # the value starts after its length
            end = at + size
        elif wire in _FIXED:
            end = at + _FIXED[wire]
        else:
            raise ValueError(f"wire type {wire} (groups) in an ONNX message")
        if number == 0 or end > len(message):
            raise ValueError("truncated message")
        yield number, wire, bytes(message[start:at]), message[at:end]
        at = end


def _rewrite(message: memoryview, number: int, change: Callable[[memoryview], bytes]) -> bytes:
    """``message`` with each length-delimited field ``number`` replaced by ``change`` of it."""
    parts = []
    for field, wire, head, value in _fields(message):
        if field == number and wire == _LEN:
            new = change(value)
            parts.append(_encode_varint(field << 3 | _LEN) + _encode_varint(len(new)) + new)
        else:
            parts.append(head + bytes(value))
    return b"".join(parts)


def _first(message: memoryview, number: int) -> bytes | None:
    """The first length-delimited field ``number``, read no further than it."""
    return next((bytes(v) for f, w, _, v in _fields(message) if f == number and w == _LEN), None)


def without_logistic(onnx: bytes, model: str) -> bytes:
    """``onnx`` with its one tree ensemble classifier's ``post_transform`` ``LOGISTIC``
    made ``NONE``; ``ModelError`` naming ``model`` when it has no such ensemble."""
    ensembles = 0
    transforms: list[bytes | None] = []

    def attribute(value: memoryview) -> bytes:
        if _first(value, ATTRIBUTE_NAME) != b"post_transform":
            return bytes(value)
        transforms.append(_first(value, ATTRIBUTE_S))
        return _rewrite(value, ATTRIBUTE_S, lambda _: b"NONE")

    def node(value: memoryview) -> bytes:
        nonlocal ensembles
        if _first(value, NODE_OP_TYPE) != b"TreeEnsembleClassifier":
            return bytes(value)
        ensembles += 1
        return _rewrite(value, NODE_ATTRIBUTE, attribute)

    try:
        out = _rewrite(
            memoryview(onnx), MODEL_GRAPH, lambda graph: _rewrite(graph, GRAPH_NODE, node)
        )
    except ValueError as exc:
        raise ModelError(f"model {model}: not an ONNX model ({exc})") from None
    if ensembles != 1 or transforms != [b"LOGISTIC"]:
        raise ModelError(f"model {model}: no logistic tree ensemble to explain")
    return out
