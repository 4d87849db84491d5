"""LightGBM's TreeSHAP through its C library, without importing the ``lightgbm`` package.

``import lightgbm`` imports scikit-learn, SciPy and pandas when they are installed (for
its scikit-learn and DataFrame interfaces): 2.5 to 3 s of a start-up on a loaded 2-core
machine, for an explainer that only loads a model text and asks for contributions. The
package's own ``lib_lightgbm`` does both through three documented C API calls
(``LGBM_BoosterLoadModelFromString``, ``LGBM_BoosterCalcNumPredict``,
``LGBM_BoosterPredictForMat`` with ``C_API_PREDICT_CONTRIB`` or ``_RAW_SCORE``), the ones
the package's ``Booster.predict(pred_contrib=True)`` and ``predict(raw_score=True)`` make
for a float32 matrix; the library is loaded from the installed package, so the arithmetic
is the same.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import platform
from pathlib import Path

import numpy as np
import numpy.typing as npt

_DTYPE_FLOAT32 = 0  # C_API_DTYPE_FLOAT32
_ROW_MAJOR = 1
_PREDICT_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE
_PREDICT_CONTRIB = 3  # C_API_PREDICT_CONTRIB
_ALL_ITERATIONS = -1
_PARAMETERS = b"num_threads=1"


class LightGBMError(Exception):
    """The C library refused a call (its own message)."""


def library_path() -> Path:
    """``lib_lightgbm`` of the installed ``lightgbm`` package, found without importing it.

    ``ImportError`` when the package is not installed or carries no library."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lightgbm is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    name = {"Windows": "lib_lightgbm.dll", "Darwin": "lib_lightgbm.dylib"}.get(
        platform.system(), "lib_lightgbm.so"
    )
    for folder in (package / "lib", package / "bin", package.parent):  # as lightgbm.libpath
        if (folder / name).is_file():
            return folder / name
    raise ImportError(f"lightgbm is installed without {name}")


@functools.cache
def _lib() -> ctypes.CDLL:
    """The library, loaded once (``OSError``: no OpenMP runtime, e.g. libgomp.so.1)."""
    lib = ctypes.CDLL(str(library_path()))
    lib.LGBM_GetLastError.restype = ctypes.c_char_p
    return lib


def _check(code: int) -> None:
    if code != 0:
        raise LightGBMError(_lib().LGBM_GetLastError().decode("utf-8", "replace"))


class Booster:
    """A LightGBM model read from its text format; its handle is freed with the object."""

    def __init__(self, model_text: str) -> None:
        lib = _lib()
        self._handle = ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        _check(
            lib.LGBM_BoosterLoadModelFromString(
                model_text.encode("utf-8"), ctypes.byref(iterations), ctypes.byref(self._handle)
            )
        )

    def contributions(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``predict(pred_contrib=True)``: per row, each input's contribution, then the base
        value; ``matrix`` is a float32 ``[n, width]`` array."""
        return self._predict(matrix, _PREDICT_CONTRIB)

    def margins(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``predict(raw_score=True)``: per row, the model's margin (log-odds)."""
        return self._predict(matrix, _PREDICT_RAW_SCORE)[:, 0]

    def _predict(self, matrix: npt.NDArray[np.float32], kind: int) -> npt.NDArray[np.float64]:
        batch = np.ascontiguousarray(matrix, dtype=np.float32)
        rows, width = batch.shape
        if rows == 0:
            return np.empty((0, width + 1 if kind == _PREDICT_CONTRIB else 1), dtype=np.float64)
        lib = _lib()
        expected = ctypes.c_int64(0)
        _check(
            lib.LGBM_BoosterCalcNumPredict(
                self._handle,
                ctypes.c_int(rows),
                ctypes.c_int(kind),
                ctypes.c_int(0),
                ctypes.c_int(_ALL_ITERATIONS),
                ctypes.byref(expected),
            )
        )
        out = np.empty(expected.value, dtype=np.float64)
        written = ctypes.c_int64(0)
        _check(
            lib.LGBM_BoosterPredictForMat(
                self._handle,
                batch.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(_DTYPE_FLOAT32),
                ctypes.c_int32(rows),
                ctypes.c_int32(width),
                ctypes.c_int(_ROW_MAJOR),
                ctypes.c_int(kind),
                ctypes.c_int(0),
                ctypes.c_int(_ALL_ITERATIONS),
                ctypes.c_char_p(_PARAMETERS),
                ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        if written.value != expected.value:
            raise LightGBMError(f"{written.value} values written, {expected.value} due")
        return out.reshape(rows, -1)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:  # set only once the library was loaded
            _lib().LGBM_BoosterFree(handle)
