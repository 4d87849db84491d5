"""The explainer of a model version: LightGBM's own model text, verified against the ONNX.

A version directory may carry ``explainer.txt`` (``booster.save_model`` of the trees the
ONNX file was exported from; ``models/train.py`` writes it and its sha256 into
``metadata.json``'s ``explainer``). Reason codes need each input's exact contribution to
the model's margin: LightGBM's ``predict(pred_contrib=True)`` computes TreeSHAP on its own
trees, read from its own text format, with no converter between the trees and the
arithmetic. shap's TreeExplainer would pull numba and pandas into the serving image and,
for a LightGBM model, calls this same ``pred_contrib`` for the raw margin anyway.

An explainer is used only when it is the same model as the ONNX file, checked on a
reference set at every load (start-up, hot swap, MLflow): its margin must equal the ONNX
margin and the sigmoid of it the ONNX score on every reference row, and the base value plus
the contributions must add up to that margin, all within ``TOLERANCE``. Anything else is
a ``ModelError``: the version is refused, not served without reasons.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from streamer.model.integrity import check_sha256, model_error
from streamer.model.lightgbm_lib import Booster, LightGBMError
from streamer.model.margin_model import without_logistic
from streamer.model.metadata import ModelMetadata
from streamer.model.sessions import open_session
from streamer.model.treeshap import FastContributions, fast_contributions
from streamer.model.treeshap import available as treeshap_available

log = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest |explainer margin - ONNX margin| (also of base + sum of contributions, and of
the scores) accepted."""
REFERENCE_ROWS = 256
ADDITIVE_ROWS = 4
"""Reference rows whose contributions are summed, and on which the C TreeSHAP is checked
against LightGBM's as the trees load. TreeSHAP costs about a millisecond a row (a second
of start-up for all 256 on a loaded 2-core machine), and LightGBM's contributions add up
to its own margin by construction: the margins show the explainer is this model, these
rows that its contributions are read whole, and that the C TreeSHAP reads this model's
trees as LightGBM does (each row goes down every tree; ``test_treeshap`` holds the two to
the same values on thousands more)."""
_CALENDAR_RANGES = {"hour_of_day": 24, "day_of_week": 7, "is_night": 2}


Trees = tuple[Booster, FastContributions | None]
"""LightGBM's model, and its contributions faster, up to rounding (``model.treeshap``),
where it can."""


class Explainer:
    """Per-input contributions to the margin (log-odds) of a LightGBM model: LightGBM's own,
    or the C TreeSHAP's, the same up to rounding (``model.treeshap``).

    The trees are loaded on first use (``load``: LightGBM parsing the text, the C TreeSHAP
    checked against it, about 50 ms), which is ``verify``'s, on the thread where a
    start-up checks the model beside its other work (``registry.open_model``)."""

    def __init__(self, load: Callable[[], Trees], width: int) -> None:
        self.width = width
        self._load = load
        self._trees: Trees | None = None
        self._lock = threading.Lock()

    def contributions(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``[n, width + 1]``: each input's contribution; the last column is the base value
        (the expected margin), so a row sums to the model's margin."""
        if matrix.shape[0] == 0:
            return np.empty((0, self.width + 1), dtype=np.float64)
        booster, fast = self._loaded()
        return fast(matrix) if fast is not None else booster.contributions(matrix)

    def start(self, matrix: npt.NDArray[np.float32]) -> Callable[[], npt.NDArray[np.float64]]:
        """``contributions`` from now on, the returned callable waiting for them: in a C
        thread that never takes the GIL where the C TreeSHAP serves, else here and now."""
        fast = self._loaded()[1]
        if fast is not None and matrix.shape[0]:
            return fast.start(matrix)
        done = self.contributions(matrix)
        return lambda: done

    def margins(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The model's margin (log-odds) per row."""
        return self._loaded()[0].margins(matrix)

    def _loaded(self) -> Trees:
        trees = self._trees
        if trees is None:
            with self._lock:  # loaded once; a load that raised raises again on the next use
                trees = self._trees = self._trees or self._load()
        return trees


def open_explainer(spec: str, onnx_path: Path, meta: ModelMetadata) -> Explainer | None:
    """The explainer beside ``onnx_path``, its file checked against its sha256 but not yet
    against the ONNX model (``verify``); None when the metadata names none."""
    record = meta.explainer
    if record is None:
        return None
    path = onnx_path.with_name(record.file)
    try:
        text = path.read_bytes()
    except OSError:
        raise model_error(
            spec, f"{path} is missing", "restore it or re-export with models/train.py"
        ) from None
    check_sha256(spec, path, text, record.sha256)
    width = len(meta.feature_names)

    def load() -> Trees:
        booster = _booster(spec, text)
        rows = reference_rows(meta, ADDITIVE_ROWS)
        fast = fast_contributions(text.decode("utf-8"), booster.contributions, rows)
        if not treeshap_available():
            log.warning(
                "model %s: reasons from LightGBM's own TreeSHAP, about 15 times the CPU of "
                "the C one, which is not built here or was built from another version of "
                "streamer (reinstall it: pip install -e . or make install)",
                spec,
            )
        return booster, fast if fast is not None and fast.width == width else None

    return Explainer(load, width)


def verify(
    spec: str,
    explainer: Explainer,
    meta: ModelMetadata,
    onnx: bytes,
    session: ort.InferenceSession,
) -> None:
    """Refuse an explainer that is not the ONNX file's model, on a reference set
    (``session``: one of the file's, open already). The contributions are read on the rows
    the trees' load checked the C TreeSHAP on, whose sums it remembers."""
    additive = reference_rows(meta, ADDITIVE_ROWS)
    rows = np.concatenate([reference_rows(meta), additive])
    margin, scores = onnx_margin_and_score(onnx, meta, rows, session)
    own = explainer.margins(rows)
    total = explainer.contributions(additive).sum(axis=1)
    additivity = float(
        max(np.max(np.abs(own - margin)), np.max(np.abs(total - margin[-ADDITIVE_ROWS:])))
    )
    agreement = float(np.max(np.abs(1.0 / (1.0 + np.exp(-own)) - scores)))
    if not (additivity <= TOLERANCE and agreement <= TOLERANCE):
        raise model_error(
            spec,
            f"its explainer disagrees with model.onnx on {len(rows)} reference rows "
            f"(margin off by {additivity:.2e}, score by {agreement:.2e}; limit {TOLERANCE:g})",
            "the explainer is not this model's: re-export both with models/train.py",
        )


def onnx_margin_and_score(
    onnx: bytes,
    meta: ModelMetadata,
    rows: npt.NDArray[np.float32],
    session: ort.InferenceSession | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ONNX model's margin (its tree ensemble without the logistic) and P(fraud)
    (by ``session``, one of ``onnx``'s, when given)."""
    margin_model = without_logistic(onnx, f"{meta.name}@{meta.version}")
    probability = _run(session or open_session(onnx), meta, rows)
    margin = _run(open_session(margin_model), meta, rows)
    return margin, probability


def _run(session: ort.InferenceSession, meta: ModelMetadata, rows: npt.NDArray[np.float32]) -> Any:
    (out,) = session.run([meta.probability_output], {meta.input_name: rows})
    return np.asarray(out, dtype=np.float64)[:, 1]


def reference_rows(meta: ModelMetadata, n: int = REFERENCE_ROWS) -> npt.NDArray[np.float32]:
    """Rows spread over each input's training range (its reference histogram's bins, drawn
    by their counts), calendar inputs over their values: a fixed, reproducible set."""
    rng = np.random.default_rng(20261206)
    columns = []
    for name in meta.feature_names:
        histogram = meta.reference_features.get(name)
        if name in _CALENDAR_RANGES:
            column = rng.integers(0, _CALENDAR_RANGES[name], n).astype(np.float64)
        elif histogram is None or not histogram.cuts:
            column = rng.random(n)
        else:
            cuts = np.asarray(histogram.cuts, dtype=np.float64)
            spread = max(float(cuts[-1] - cuts[0]), 1.0)
            edges = np.concatenate([[cuts[0] - spread / 4], cuts, [cuts[-1] + spread / 4]])
            counts = np.asarray(histogram.counts, dtype=np.float64)
            bins = rng.choice(len(counts), n, p=counts / counts.sum())
            column = rng.uniform(edges[bins], edges[bins + 1])
        columns.append(column)
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)


def _booster(spec: str, text: bytes) -> Booster:
    try:
        return Booster(text.decode("utf-8"))
    except (ImportError, OSError) as exc:  # OSError: no OpenMP runtime (libgomp.so.1)
        raise model_error(
            spec,
            f"its explainer needs lightgbm, which cannot be loaded ({type(exc).__name__})",
            "install lightgbm and its OpenMP runtime (Debian: libgomp1)",
        ) from None
    except (LightGBMError, UnicodeDecodeError) as exc:
        raise model_error(
            spec, f"LightGBM cannot read its explainer ({type(exc).__name__})", "re-export it"
        ) from None
