"""The margin model: the ONNX file with its logistic off, as the onnx package would make it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from streamer.errors import ModelError
from streamer.model.margin_model import without_logistic

MODELS = Path(__file__).resolve().parents[2] / "models" / "fraud-gbt"
SHIPPED = sorted(p.read_bytes() for p in MODELS.glob("*/model.onnx"))


def _by_onnx(data: bytes) -> onnx.ModelProto:
    model = onnx.load_from_string(data)
    (tree,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    (transform,) = [a for a in tree.attribute if a.name == "post_transform"]
    transform.s = b"NONE"
    return model


@pytest.mark.parametrize("data", SHIPPED, ids=lambda d: f"{len(d)}B")
def test_the_shipped_models_edited_as_the_onnx_package_does_it(data: bytes) -> None:
    expected = _by_onnx(data)
    edited = without_logistic(data, "m@1")
    assert onnx.load_from_string(edited) == expected
    assert edited == expected.SerializeToString()


def _ensemble(transform: str | None, name: str = "trees") -> onnx.NodeProto:
    extra = {} if transform is None else {"post_transform": transform}
    return helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        name=name,
        domain="ai.onnx.ml",
        classlabels_int64s=[0, 1],
        nodes_treeids=[0],
        nodes_nodeids=[0],
        nodes_featureids=[0],
        nodes_values=[0.0],
        nodes_modes=["LEAF"],
        nodes_truenodeids=[0],
        nodes_falsenodeids=[0],
        class_treeids=[0],
        class_nodeids=[0],
        class_ids=[1],
        class_weights=[0.5],
        **extra,
    )


def _model(*nodes: onnx.NodeProto) -> bytes:
    graph = helper.make_graph(list(nodes), "g", [], [])
    return helper.make_model(graph).SerializeToString()


def test_the_edit_reaches_an_ensemble_among_other_nodes_and_attributes() -> None:
    data = _model(helper.make_node("Identity", ["a"], ["x"]), _ensemble("LOGISTIC"))
    assert without_logistic(data, "m@1") == _by_onnx(data).SerializeToString()


@pytest.mark.parametrize(
    "nodes",
    [
        (helper.make_node("Identity", ["a"], ["b"]),),
        (_ensemble("NONE"),),
        (_ensemble("SOFTMAX"),),
        (_ensemble(None),),
        (_ensemble("LOGISTIC"), _ensemble("LOGISTIC", "more trees")),
    ],
    ids=["no ensemble", "no logistic", "softmax", "no transform", "two ensembles"],
)
def test_a_model_without_one_logistic_ensemble_is_refused(nodes: tuple[onnx.NodeProto]) -> None:
    with pytest.raises(ModelError, match=r"^model m@1: no logistic tree ensemble to explain$"):
        without_logistic(_model(*nodes), "m@1")


def _truncated(n: int) -> bytes:
    return SHIPPED[0][:n]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.integers(0, len(SHIPPED[0])).map(_truncated))
def test_any_bytes_are_edited_as_the_onnx_package_would_or_refused(data: bytes) -> None:
    try:
        expected = _by_onnx(data).SerializeToString()
    except Exception:  # noqa: BLE001 - not a model, or no one logistic ensemble in it
        with pytest.raises(ModelError, match=r"^model m@1: (not an ONNX model|no logistic tree)"):
            without_logistic(data, "m@1")
    else:
        assert without_logistic(data, "m@1") == expected
