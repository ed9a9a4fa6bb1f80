"""Common-subexpression elimination in the export optimiser (compiler/onnx/cse.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import compiler
from compiler.onnx.cse import eliminate_common_subexpressions
from compiler.onnx.export import export, fresh_weights

ROOT = Path(__file__).resolve().parents[1]


def _model(nodes, outputs=("y",)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 3]) for o in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 18)])


def test_duplicates_merged_chains_included_outputs_and_random_kept():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),        # same
             helper.make_node("Exp", ["a"], ["ea"]), helper.make_node("Exp", ["b"], ["eb"]),        # same once a == b
             helper.make_node("LeakyRelu", ["x"], ["l1"], alpha=0.1),
             helper.make_node("LeakyRelu", ["x"], ["l2"], alpha=0.2),                               # other attrs
             helper.make_node("RandomNormalLike", ["x"], ["r1"]), helper.make_node("RandomNormalLike", ["x"], ["r2"]),
             helper.make_node("Sum", ["ea", "eb", "l1", "l2", "r1", "r2"], ["y"]),
             helper.make_node("Exp", ["a"], ["z"])]                                                 # a graph output
    m = _model(nodes, ("y", "z"))
    assert eliminate_common_subexpressions(m) == 2
    kinds = [n.op_type for n in m.graph.node]
    assert kinds.count("Relu") == 1 and kinds.count("Exp") == 2 and kinds.count("LeakyRelu") == 2
    assert kinds.count("RandomNormalLike") == 2
    assert list(m.graph.node[-2].input)[:2] == ["ea", "ea"]
    onnx.checker.check_model(m, full_check=True)


@pytest.mark.parametrize("spec,after", [("gcn", 18), ("gat", 36)])
def test_graph_normalisation_computed_once_and_outputs_unchanged(spec, after):
    """Before the merge the default export had 23 (gcn) and 41 (gat) nodes: each layer lowered its own
    normalisation / mask from the adjacency."""
    ort = pytest.importorskip("onnxruntime")
    from runtime.model import Model
    g = compiler.compile_file(ROOT / "specs" / f"{spec}.yaml")
    w = fresh_weights(g)
    model = export(g, w).model
    assert len(model.graph.node) == after
    assert eliminate_common_subexpressions(model) == 0                     # nothing left to merge
    unoptimised = export(g, w, optimize=False).model                       # the merge alone, on the raw lowering
    assert eliminate_common_subexpressions(unoptimised) == 5
    if spec == "gcn":                                                      # the degrees D = rowsum(A + I): once
        assert sum(n.op_type == "ReduceSum" for n in model.graph.node) == 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2708, 1433)).astype(np.float32) * (rng.random((2708, 1433)) < 0.01)
    adj = (rng.random((2708, 2708)) < 0.002).astype(np.float32)
    adj = np.maximum(adj, adj.T)
    feeds = {"x": x, "adj": adj}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    got = dict(zip(names, sess.run(None, {i.name: feeds[i.name] for i in model.graph.input})))
    ref = Model(g).eval()
    ref.load_state_dict(w)
    want = ref(outputs=names, **{k: v for k, v in feeds.items() if k in g.inputs and k in ("x", "adj")})
    for k in names:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["transformer_classifier", "lenet5"])
def test_attributes_that_converters_default_differently_are_explicit(spec):
    from compiler.onnx.defaults import EXPLICIT
    g = compiler.compile_file(ROOT / "specs" / f"{spec}.yaml")
    model = export(g, fresh_weights(g)).model
    checked = 0
    for nd in model.graph.node:
        if nd.op_type in EXPLICIT:
            attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
            assert set(EXPLICIT[nd.op_type]) <= set(attrs), nd.name
            checked += 1
    assert checked
    if spec == "transformer_classifier":                 # positions 0..T-1: a forward, exclusive running sum
        cumsum = [nd for nd in model.graph.node if nd.op_type == "CumSum"]
        assert cumsum and all({(a.name, a.i) for a in nd.attribute} == {("exclusive", 1), ("reverse", 0)}
                              for nd in cumsum)


@pytest.mark.parametrize("spec", ["lstm_classifier", "gru_classifier", "seq2seq"])
def test_no_blank_output_before_a_named_one(spec):
    """The last LSTM layer's Y is unread (only Y_h is): it keeps a name instead of a blank before Y_h."""
    g = compiler.compile_file(ROOT / "specs" / f"{spec}.yaml")
    model = export(g, fresh_weights(g)).model
    for nd in model.graph.node:
        outs = list(nd.output)
        assert all(o for o in outs), (nd.name, outs)          # blanks only ever trail, and trailing ones are dropped
    assert "" not in {v.name for v in onnx.shape_inference.infer_shapes(model).graph.value_info}


# (gat and dcgan agree too, but take 16 s in the reference evaluator)
REFERENCE_SPECS = ["lenet5", "mlp", "lstm_classifier", "gru_classifier", "transformer_classifier", "gcn", "vae",
                   "perceptron"]


def _inputs(graph, model):
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        t = graph.inputs[vi.name]
        shape = [2 if isinstance(d, str) else d for d in t.shape]
        if t.dtype == "int64":
            feeds[vi.name] = rng.integers(0, 5, shape)
        elif t.dtype == "bool":
            feeds[vi.name] = rng.random(shape) < 0.2
        else:                                    # non-negative: an adjacency's degrees must be
            feeds[vi.name] = rng.random(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("spec", REFERENCE_SPECS)
def test_export_agrees_with_onnx_reference_evaluator(spec):
    """ONNX's own reference implementation of every node gives the NumPy runtime's outputs."""
    from onnx.reference import ReferenceEvaluator
    from runtime.model import Model
    g = compiler.compile_file(ROOT / "specs" / f"{spec}.yaml")
    w = fresh_weights(g)
    model = export(g, w).model
    feeds = _inputs(g, model)
    names = [o.name for o in model.graph.output]
    with np.errstate(invalid="ignore"):          # a fully masked attention row: -inf - -inf before the Where
        got = dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))
    ref = Model(g).eval()
    ref.load_state_dict(w)
    want = ref(outputs=names, **feeds)
    for k in names:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", REFERENCE_SPECS)
def test_onnxscript_optimizer_finds_nothing_to_remove(spec):
    optimizer = pytest.importorskip("onnxscript.optimizer")
    g = compiler.compile_file(ROOT / "specs" / f"{spec}.yaml")
    model = export(g, fresh_weights(g)).model
    n = len(model.graph.node)
    assert len(optimizer.optimize(model).graph.node) == n
