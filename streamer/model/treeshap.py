"""LightGBM's TreeSHAP in C with each tree's sums remembered: its contributions, faster.

TreeSHAP costs about 0.7 ms of CPU per explained row for the bundled model (150 trees of
31 leaves), most of the stream's CPU when reasons are on. What a tree adds to a row's
contributions depends only on which way the row goes at each of the tree's nodes (its
pattern), and flagged rows go the same ways again and again. The C part (``_treeshap.c``)
computes a tree's sums once per pattern, from its small subtrees' sums (remembered the
same way) and its leaves' terms, computed with LightGBM's own arithmetic operation for
operation (and remembered per pattern of their ancestors), and adds the remembered sums
to each row: per tree, the node decisions, a lookup and an addition per input the tree
splits on.

A row's contributions are a function of the row alone (the batch and the memory's state
change no bit), and LightGBM's ``pred_contrib`` up to rounding: LightGBM adds the terms
one by one, this each tree's first (``FastContributions.bound`` says how far apart that
can take them). The base value is LightGBM's exactly.

``fast_contributions`` gives the C model for a model text it takes (plain numerical
trees, one per iteration, no linear trees), checked at load against LightGBM itself on
the rows given (``Explainer`` passes its reference rows) and refused on any difference
beyond rounding: the explainer then asks LightGBM, as it does where the extension was not
built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

FORMAT = 3
"""The extension's ``FORMAT`` this module calls (a build of another version of
``_treeshap.c``, left from before a source update, is not used)."""

try:
    from streamer.model import _treeshap  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler at install): LightGBM's own TreeSHAP
    _treeshap = None
if getattr(_treeshap, "FORMAT", None) != FORMAT:  # stale build: rebuild (pip install -e .)
    _treeshap = None

Contributions = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]


class UnsupportedModelError(ValueError):
    """A model text the C TreeSHAP does not take (LightGBM's own serves it)."""


def available() -> bool:
    """Whether the C extension was built from this source and imports."""
    return _treeshap is not None


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _numbers(fields: dict[str, str], key: str, kind: type, n: int) -> list[Any]:
    values = [kind(v) for v in fields.get(key, "").split()]
    if len(values) != n:
        raise UnsupportedModelError(f"{key}: {len(values)} values, {n} due")
    return values


def parse(text: str) -> tuple[int, list[dict[str, list[Any]]]]:
    """The input count and the trees of a LightGBM model text (``save_model``)."""
    head, _, rest = text.partition("\nTree=")
    header = _fields(head)
    if header.get("num_tree_per_iteration", "1") != "1" or header.get("num_class", "1") != "1":
        raise UnsupportedModelError("more than one tree per iteration")
    if "average_output" in header:
        raise UnsupportedModelError("averaged output (random forest)")
    features = int(header["max_feature_idx"]) + 1
    body = rest.split("\nend of trees", 1)[0]
    trees = []
    for block in ("Tree=" + body).split("\nTree="):
        fields = _fields(block)
        if fields.get("is_linear", "0") != "0" or fields.get("num_cat", "0") != "0":
            raise UnsupportedModelError("linear or categorical trees")
        leaves = int(fields["num_leaves"])
        nodes = leaves - 1
        tree = {
            "leaf_value": _numbers(fields, "leaf_value", float, leaves),
            "leaf_count": _numbers(fields, "leaf_count", int, leaves) if nodes else [0],
        }
        for key, kind in (
            ("split_feature", int),
            ("threshold", float),
            ("decision_type", int),
            ("left_child", int),
            ("right_child", int),
            ("internal_count", int),
        ):
            tree[key] = _numbers(fields, key, kind, nodes) if nodes else []
        trees.append(tree)
    return features, trees


def _flat(trees: list[dict[str, list[Any]]], key: str, dtype: Any) -> bytes:
    values = [v for tree in trees for v in tree[key]]
    return np.asarray(values, dtype=dtype).tobytes()


class MemoryStats(NamedTuple):
    """How well the C TreeSHAP's memory serves: (tree, pattern) sums and per-leaf terms."""

    tree_hits: int
    tree_misses: int
    trees_kept: int
    leaf_hits: int
    leaf_misses: int
    leaves_kept: int


class FastContributions:
    """``pred_contrib`` of one model through the C TreeSHAP, up to the rounding of its sums
    (``bound``). A call releases the GIL; calls on one object wait for each other (its
    memory is one)."""

    def __init__(self, text: str, *, memory: tuple[int, int, int, int] | None = None) -> None:
        """``memory``: (leaf terms, bytes of per-leaf tables, tree slots, tree sums) to
        remember before starting over; the C defaults when None (small ones test the
        starting over)."""
        if _treeshap is None:
            raise UnsupportedModelError("the C TreeSHAP was not built")
        self.width, trees = parse(text)
        leaves = [len(t["leaf_value"]) for t in trees]
        self._model = _treeshap.model(
            self.width,
            np.asarray([len(t["split_feature"]) for t in trees], dtype=np.int32).tobytes(),
            np.asarray(leaves, dtype=np.int32).tobytes(),
            _flat(trees, "split_feature", np.int32),
            _flat(trees, "threshold", np.float64),
            _flat(trees, "decision_type", np.int8),
            _flat(trees, "left_child", np.int32),
            _flat(trees, "right_child", np.int32),
            _flat(trees, "internal_count", np.int32),
            _flat(trees, "leaf_value", np.float64),
            _flat(trees, "leaf_count", np.int32),
            *(memory or ()),
        )
        # Both sums run over the same terms (at most one per leaf and input). LightGBM adds
        # a row's terms for an input one after another: each is rounded at most
        # ``sum(leaves) - 1`` times. Here a tree's terms are added up first, in parts (its
        # small subtrees') and then together: at most one rounding per addition above a
        # term, so up to ``max(leaves) - 1``; then the trees' sums (``len(trees)`` more). A
        # recursive sum of terms t_i, each rounded at most k times, is within
        # gamma(k) * sum |t_i| of the exact sum (gamma(k) = k u / (1 - k u), u = 2^-53:
        # Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 4.2),
        # so the two differ by at most (gamma(a) + gamma(b)) * sum |t_i|: ``rounding``.
        self.rounding = _gamma(sum(leaves) - 1) + _gamma(max(leaves) - 1 + len(trees))

    def __call__(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return self._call(_treeshap.contributions, matrix)

    def start(self, matrix: npt.NDArray[np.float32]) -> Callable[[], npt.NDArray[np.float64]]:
        """``self(matrix)`` computed from now on by a C thread of its own, which never takes
        the GIL: the caller's Python runs on beside it without handing the GIL over. The
        returned callable waits for it and returns the contributions."""
        batch, out = self._buffers(np.array(matrix, dtype=np.float32))  # its own copy
        job = _treeshap.start(self._model, batch, batch.shape[0], out)

        def finished() -> npt.NDArray[np.float64]:
            _treeshap.finish(job)
            return out

        return finished

    def bound(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Per row and input, the most this object's contributions can differ from
        LightGBM's by rounding alone (0 for the base value: the same sum in the same order).
        As costly as LightGBM's TreeSHAP: for a load-time check."""
        return self.rounding * self._call(_treeshap.magnitudes, matrix)

    def _call(self, function: Any, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``function`` of the C model over the whole batch, in one call."""
        batch, out = self._buffers(matrix)
        function(self._model, batch, batch.shape[0], out)
        return out

    def _buffers(
        self, matrix: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """``matrix`` as the C code reads it (float32, C order) and the output it fills;
        ``ValueError`` for a matrix of another width."""
        batch = np.ascontiguousarray(matrix, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.width:
            raise ValueError(f"a [n, {self.width}] matrix is due, not {batch.shape}")
        return batch, np.empty((batch.shape[0], self.width + 1), dtype=np.float64)

    def stats(self) -> MemoryStats:
        """The memory's hits, misses and what it keeps now."""
        leaf_hits, leaf_misses, leaves, tree_hits, tree_misses, trees = _treeshap.stats(self._model)
        return MemoryStats(tree_hits, tree_misses, trees, leaf_hits, leaf_misses, leaves)


def _gamma(k: int) -> float:
    u = 2.0**-53
    return k * u / (1 - k * u)


def fast_contributions(
    text: str, reference: Contributions, rows: npt.NDArray[np.float32]
) -> FastContributions | None:
    """The C TreeSHAP of ``text`` when it takes the model and agrees with ``reference``
    (LightGBM's own) on ``rows`` within rounding (``FastContributions.bound``); otherwise
    None."""
    try:
        fast = FastContributions(text)
    except (UnsupportedModelError, KeyError, ValueError):
        return None
    expected = reference(rows)
    got = fast(rows)
    if got.shape != expected.shape or not np.all(np.abs(got - expected) <= fast.bound(rows)):
        return None
    return fast
