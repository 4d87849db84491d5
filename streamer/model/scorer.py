"""ONNX Runtime scoring of a whole micro-batch: one ``InferenceSession.run`` per batch.

The session uses one intra-op thread by default and never spins (``model.sessions``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamer.model.registry import LoadedModel, ModelMetadata
from streamer.model.sessions import open_session


class Scorer:
    """Fraud probabilities for a float32 feature matrix in the model's feature order."""

    def __init__(self, model: LoadedModel, *, intra_op_threads: int = 1) -> None:
        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be at least 1")
        self.model = model
        meta = model.metadata
        self._session = open_session(model.onnx_bytes, intra_op_threads)
        self._input = meta.input_name
        self._outputs = [meta.probability_output]
        self._width = len(meta.feature_names)
        shape = next(o.shape for o in self._session.get_outputs() if o.name == self._outputs[0])
        # [n, 2] holds (P(genuine), P(fraud)); [n] or [n, 1] holds P(fraud) alone.
        self._column = 1 if len(shape) == 2 and shape[1] != 1 else 0

    @property
    def metadata(self) -> ModelMetadata:
        return self.model.metadata

    def score(self, matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """P(fraud) per row, as float64; one ``session.run`` for the whole matrix."""
        if matrix.ndim != 2 or matrix.shape[1] != self._width:
            raise ValueError(f"expected [n, {self._width}] features, got {matrix.shape}")
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        batch = np.ascontiguousarray(matrix, dtype=np.float32)  # no copy when already so
        (probabilities,) = self._session.run(self._outputs, {self._input: batch})
        out = np.asarray(probabilities)
        column = out[:, self._column] if out.ndim == 2 else out
        return column.astype(np.float64)
