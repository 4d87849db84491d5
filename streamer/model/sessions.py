"""ONNX Runtime sessions as streamer opens them: one thread each, which never spins.

With spinning on, ONNX Runtime burns a core for 40-60 ms after every ``run``
(FIELD_NOTES), and its default pool takes every core: streamer scales with one process
per core instead. The checks of a model at load (its signature, its explainer) open
theirs the same way, so a start-up's checks take no core from the imports beside them.
"""

from __future__ import annotations

import onnxruntime as ort


def session_options(
    intra_op_threads: int = 1,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> ort.SessionOptions:
    """Sequential, no spinning, ``intra_op_threads`` threads, graph ``optimization``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = optimization
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_session(
    onnx: bytes,
    intra_op_threads: int = 1,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> ort.InferenceSession:
    """A CPU session of the model in ``onnx`` (``session_options``)."""
    return ort.InferenceSession(
        onnx, session_options(intra_op_threads, optimization), providers=["CPUExecutionProvider"]
    )
