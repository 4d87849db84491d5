"""``streamer monitor export``: the labelled events of a range as the next training set.

One row per labelled event: what was served (scores, decisions, versions), what it turned
out to be (label, label time, source), and the model inputs the stream logged for it
(``STREAMER_FEATURE_LOGGING=true``), one float32 column per input, so the training set is
exactly what the model saw. Where inputs were not logged, the file still has every row and
``Export.rebuild`` names the inputs to rebuild offline (``streamer features build``), by
the model versions that scored those events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamer.errors import ConfigError, ModelError
from streamer.monitor.labels import LABEL_KINDS
from streamer.monitor.records import DECISIONS, unpack_features
from streamer.monitor.report import Window
from streamer.monitor.state import JoinState

_CHUNK = 5000


@dataclass
class Export:
    """What was written: rows, rows with logged inputs, and inputs to rebuild offline."""

    rows: int
    with_features: int
    rebuild: dict[str, list[str]] = field(default_factory=dict)  # model key -> inputs


def export_window(window: Window, state: JoinState, out: Path, models_dir: Path) -> Export:
    """Write ``window``'s labelled events to the Parquet file ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    joined = window.joined
    columns = _served_columns(joined, window.transaction_ids, state)
    features, logged = _feature_columns(window.transaction_ids, state)
    table = pa.table({**columns, **features})
    rebuild = _to_rebuild(joined["version"][~logged], state, models_dir)
    metadata = {b"streamer.rebuild_features": repr(rebuild).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    try:
        pq.write_table(table, out)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from None
    return Export(len(joined), int(logged.sum()), rebuild)


def _served_columns(
    joined: npt.NDArray[np.void], ids: list[str], state: JoinState
) -> dict[str, object]:
    interner = state.interner

    def names(namespace: str, values: npt.NDArray[np.uint16]) -> list[str | None]:
        lookup = {int(v): interner.name(namespace, int(v)) for v in np.unique(values)}
        return [lookup[int(v)] for v in values]

    decisions = np.array(DECISIONS, dtype=object)
    shadow_code = (joined["decisions"] >> 2).astype(np.int16) - 1
    shadow = decisions[np.maximum(shadow_code, 0)]
    shadow[shadow_code < 0] = None
    label = np.array(LABEL_KINDS, dtype=object)[joined["label"]]
    models = names("version", joined["version"])
    shadows = names("version", joined["shadow_version"])
    return {
        "transaction_id": ids,
        "event_time_ms": joined["event_time"],
        "label_time_ms": joined["label_time"],
        "label": label.tolist(),
        "is_fraud": joined["label"] <= 1,
        "label_source": names("source", joined["source"]),
        "amount_minor": joined["amount_minor"],
        "currency": [c.decode("ascii", "replace") for c in joined["currency"].tolist()],
        "model": models,
        "score": joined["score"],
        "decision": decisions[joined["decisions"] & 3].tolist(),
        "shadow_model": shadows,
        "shadow_score": np.where(shadow_code >= 0, joined["shadow_score"], np.nan),
        "shadow_decision": shadow.tolist(),
    }


def _feature_columns(
    ids: list[str], state: JoinState
) -> tuple[dict[str, npt.NDArray[np.float32]], npt.NDArray[np.bool_]]:
    """One float32 column per logged input (NaN where not logged), and which rows had any."""
    n = len(ids)
    columns: dict[str, npt.NDArray[np.float32]] = {}
    logged = np.zeros(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        blobs = state.features(ids[start : start + _CHUNK])
        for offset, blob in enumerate(blobs):
            if not blob:
                continue
            set_id, values = unpack_features(blob)
            names = state.interner.feature_names(set_id) or []
            row = start + offset
            logged[row] = True
            for name, value in zip(names, values.tolist(), strict=False):
                column = columns.get(name)
                if column is None:
                    column = columns[name] = np.full(n, np.nan, dtype=np.float32)
                column[row] = value
    return {f"feature.{k}": v for k, v in sorted(columns.items())}, logged


def _to_rebuild(
    versions: npt.NDArray[np.uint16], state: JoinState, models_dir: Path
) -> dict[str, list[str]]:
    """Model key -> the inputs it reads, for the versions of rows without logged inputs."""
    from streamer.model.registry import read_metadata, resolve

    out: dict[str, list[str]] = {}
    for vid in np.unique(versions).tolist():
        key = state.interner.name("version", int(vid)) or f"#{vid}"
        try:
            meta = read_metadata(resolve(key, models_dir), key)
        except ModelError as exc:
            out[key] = [f"(model not found here: {exc}; see its metadata's feature_names)"]
            continue
        out[key] = list(meta.feature_names)
    return out
