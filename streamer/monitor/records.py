"""The bytes the monitor keeps per scored event and per label, and their numpy views.

A scored event is packed into 32 bytes (``SCORED``): event time and amount (int64), the
champion's and the shadow's scores (float32: the ONNX models output float32, so nothing is
lost), the two model versions as small ids (interned in Redis, ``state.Interner``), both
decisions in one byte and the currency. A label is 11 bytes (``LABEL``): label time, kind
and source id. A joined event is the two side by side (``JOINED``, 43 bytes), so a whole
window reads back as one ``np.frombuffer`` with no per-event Python.

Logged model inputs (``features``, present when the stream runs with feature logging) are
kept apart (``pack_features``): a feature-set id and float32 values in the model's order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DECISIONS: tuple[str, ...] = ("APPROVE", "REVIEW", "DECLINE")
"""Decision symbols in schema order; REVIEW and DECLINE count as flagged."""

_SCORED = struct.Struct("<qqffHHB3s")
_LABEL = struct.Struct("<qBH")
SCORED_BYTES = _SCORED.size
LABEL_BYTES = _LABEL.size
HOUR_MS = 3_600_000

SCORED_FIELDS: list[tuple[str, str]] = [
    ("event_time", "<i8"),
    ("amount_minor", "<i8"),
    ("score", "<f4"),
    ("shadow_score", "<f4"),
    ("version", "<u2"),
    ("shadow_version", "<u2"),
    ("decisions", "u1"),
    ("currency", "S3"),
]
LABEL_FIELDS: list[tuple[str, str]] = [("label_time", "<i8"), ("label", "u1"), ("source", "<u2")]
JOINED = np.dtype(SCORED_FIELDS + LABEL_FIELDS)
"""One joined event as stored: the packed scored event followed by its packed label."""
assert JOINED.itemsize == SCORED_BYTES + LABEL_BYTES


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """What the monitor keeps of one ScoredEvent (versions already interned to ids)."""

    transaction_id: str
    event_time_ms: int
    amount_minor: int
    currency: str
    score: float
    decision: str
    version_id: int
    shadow_score: float | None = None
    shadow_decision: str | None = None
    shadow_version_id: int = 0  # 0: no shadow

    @property
    def hour(self) -> int:
        return self.event_time_ms // HOUR_MS


def pack_scored(row: ScoredRow) -> bytes:
    """``row`` as its 32 stored bytes."""
    shadow = 0 if row.shadow_decision is None else DECISIONS.index(row.shadow_decision) + 1
    decisions = DECISIONS.index(row.decision) | shadow << 2
    shadow_score = math.nan if row.shadow_score is None else row.shadow_score
    currency = row.currency.encode("ascii", "replace")[:3].ljust(3, b"?")
    return _SCORED.pack(
        row.event_time_ms,
        row.amount_minor,
        row.score,
        shadow_score,
        row.version_id,
        row.shadow_version_id,
        decisions,
        currency,
    )


def pack_label(label_time_ms: int, code: int, source_id: int) -> bytes:
    """A label as its 11 stored bytes."""
    return _LABEL.pack(label_time_ms, code, source_id)


def event_hour(packed_scored: bytes) -> int:
    """The event-time hour of a packed scored event (its joined record's bucket)."""
    event_time: int = struct.unpack_from("<q", packed_scored)[0]
    return event_time // HOUR_MS


def joined_array(values: Sequence[bytes]) -> npt.NDArray[np.void]:
    """Packed joined events as one structured array (``JOINED``); wrong-sized values are
    skipped (a foreign key under our prefix must not break a report)."""
    good = [v for v in values if len(v) == JOINED.itemsize]
    return np.frombuffer(b"".join(good), dtype=JOINED)


def pack_features(feature_set_id: int, values: Sequence[float]) -> bytes:
    """Logged model inputs: the feature-set id (uint16) then float32 values in its order."""
    return struct.pack("<H", feature_set_id) + np.asarray(values, dtype="<f4").tobytes()


def unpack_features(blob: bytes) -> tuple[int, npt.NDArray[np.float32]]:
    """(feature-set id, values) of ``pack_features`` bytes."""
    (set_id,) = struct.unpack_from("<H", blob)
    return set_id, np.frombuffer(blob, dtype="<f4", offset=2)


def feature_names_and_values(features: Mapping[str, Any]) -> tuple[tuple[str, ...], list[float]]:
    """A logged ``features`` map as (names in a stable order, values in that order)."""
    names = tuple(sorted(features))
    return names, [float(features[n]) for n in names]
