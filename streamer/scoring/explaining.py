"""The reason codes of a scored batch, found at once or in a thread of their own.

The explainer (the C TreeSHAP of ``model.treeshap``) is the costliest step of a drain
after the features. ``ScoringKernel.start(overlap=True)`` starts it in a C thread of its
own (``Explainer.start``: that thread never takes the GIL) and returns a ``Scoring`` at
once, so the stream enriches and scores its next batches on the main thread while the
flagged rows of this one are explained on the other core; ``Scoring.result`` waits for
them. The builder of the codes (Python, cheap) runs in ``result``, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import numpy.typing as npt

from streamer.codec.columns import Column
from streamer.scoring.reasons import Contributions, Reasons


class Explaining:
    """The reason codes of a batch, found now or in the explainer thread."""

    def __init__(self, reasons: Reasons) -> None:
        self.reasons = reasons
        self._thread: ThreadPoolExecutor | None = None

    def reasons_of(
        self,
        columns: dict[str, Column],
        explainer: Contributions | None,
        names: Sequence[str],
        matrix: npt.NDArray[np.float32],
        decisions: npt.NDArray[np.int8],
        *,
        overlap: bool,
    ) -> Callable[[], None]:
        """A callable that sets ``columns["reasons"]``; the explainer runs in it, or from
        now on in the explainer thread with ``overlap``."""
        reasons = self.reasons
        rows = reasons.rows(explainer, decisions)
        if explainer is None or rows.size == 0:
            columns["reasons"] = (None,)
            return _nothing
        picked = matrix[rows]
        if overlap:
            contributions = _started(explainer, picked) or self._thread_for(explainer, picked)
        else:
            contributions = partial(explainer.contributions, picked)

        def explained() -> None:
            columns["reasons"] = reasons.column_of(
                names, rows, picked, contributions(), decisions.size
            )

        return explained

    def _thread_for(
        self, explainer: Contributions, picked: npt.NDArray[np.float32]
    ) -> Callable[[], npt.NDArray[np.float64]]:
        """An explainer that cannot start by itself runs in a Python thread of ours (its
        calls in order, one at a time; each hands the GIL over twice)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="explainer")
        return self._thread.submit(explainer.contributions, picked).result


def _started(
    explainer: Contributions, picked: npt.NDArray[np.float32]
) -> Callable[[], npt.NDArray[np.float64]] | None:
    """The explainer's own ``start`` (``model.explainer``: the C TreeSHAP in a thread that
    never takes the GIL), when it has one."""
    start = getattr(explainer, "start", None)
    return None if start is None else start(picked)


def _nothing() -> None:
    pass
