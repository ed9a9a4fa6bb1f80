"""`specc import` of the ops added for the model zoo and the tensor-op specs (docs/onnx-import.md).

Round trips (spec → specc's ONNX export → import → the NumPy runtime gives the original's outputs, and the
same parameter count) for the zoo at 64×64, the mask/index op specs and a small GAT; a torch.onnx.export of
nn.Hardswish / nn.ReLU6 / F.pad / torch.where / torch.roll against torch; hand-made ONNX graphs (ONNX's
general HardSigmoid, DCR DepthToSpace, Clip by attributes, a Gather by a 2-d index) against onnxruntime;
and the refusals that name their node.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.onnx.export import fresh_weights
from compiler.onnx_import import OnnxImportError, import_model
from runtime.model import Model
from test_onnx_import import _check_torch, _round_trip

ROOT = Path(__file__).resolve().parents[1]
ZOO = {"mobilenet_v3_small": {"size": 64, "classes": 10}, "efficientnet_b0": {"size": 64, "classes": 10},
       "convnext_tiny": {"size": 64, "classes": 10}}
ZOO_CASES = [("mobilenet_v3_small", True), ("mobilenet_v3_small", False), ("efficientnet_b0", True),
             ("efficientnet_b0", False), ("convnext_tiny", False)]
ZOO_LARGE = [("convnext_tiny", True)]                  # the same model as above, through the default export
OPS_TORCH = ROOT / "tests" / "specs" / "ops_torch"


@pytest.mark.parametrize("spec,optimize", ZOO_CASES)
def test_zoo_round_trip(spec, optimize):
    imp, _, _ = _round_trip(spec, optimize, ROOT / "specs" / "zoo" / f"{spec}.yaml", ZOO[spec])
    text = imp.text
    if spec == "mobilenet_v3_small":
        assert "hardswish" in text and "hardsigmoid" in text and "HardSwish" not in text
    if spec == "convnext_tiny":                        # LayerNorm2d: Transpose–LayerNormalization–Transpose
        assert "{op: layer_norm, name: features_0_1, dim: 1, eps: 1e-06}" in text
        assert text.count("dim: 1, eps: 1e-06}") == 5 and "permute" in text    # the CNBlocks' channels-last MLP


@pytest.mark.skipif(not os.environ.get("SPECC_FULL_ROUNDTRIP"), reason="slow: SPECC_FULL_ROUNDTRIP=1")
@pytest.mark.parametrize("spec,optimize", ZOO_LARGE)
def test_large_zoo_round_trip(spec, optimize):
    _round_trip(spec, optimize, ROOT / "specs" / "zoo" / f"{spec}.yaml", ZOO[spec])


@pytest.mark.parametrize("optimize", [True, False])
def test_mask_ops_round_trip(optimize):
    imp, _, _ = _round_trip("mask_ops", optimize, OPS_TORCH / "mask_ops.yaml")
    text = imp.text
    for line in ("{gt: 0.0, name: positive}", "{op: le, name: below, in: [x, y]}",
                 "{op: where, name: filled, in: [below, x], value: -10000.0}",
                 "{cast: float32, name: weights, in: real}", "{arange: 4}", "{op: roll, shifts: 3, dims: 1}",
                 "{op: pad, name: mirrored, pad: [1, 2], mode: reflect}",
                 "{op: pad, name: edged, in: x, pad: [1, 1, 2, 0], mode: replicate}",
                 "{pad: [0, 3], name: longer, in: tokens}"):
        assert line in text
    # Not(Equal(tokens, 0)); the default export shares the Equal with `padding`, whose negation it becomes
    assert ("{ne: 0, name: real, in: tokens}" if not optimize else "{eq: false, name: real}") in text


def test_index_ops_round_trip_keeps_the_table_and_its_index_buffer():
    imp, g, w = _round_trip("index_ops", False, OPS_TORCH / "index_ops.yaml")
    text = imp.text
    assert "{index_select: 0, in: [relative_position_bias_table, relative_position_index]}" in text
    assert "{op: buffer, name: relative_position_index, value: [4, 3, 1, 0, 5" in text and "dtype: int64}" in text
    assert "{gather: 3, name: picked, in: [img, order]}" in text       # specc's corner Slice is not needed
    assert "{pixel_shuffle: 2, name: ps, in: img}" in text and "{channel_shuffle: 4, name: cs, in: img}" in text
    for k in ("relative_position_bias_table", "relative_position_index", "order"):
        np.testing.assert_array_equal(imp.weights[k], w[k])           # the original state_dict entries
    assert imp.weights["relative_position_index"].dtype == np.int64


def test_index_ops_default_export_folds_the_lookup():
    # the default export computes table[index] once (a [heads, 4, 4] constant): it comes back as that param
    imp, _, _ = _round_trip("index_ops", True, OPS_TORCH / "index_ops.yaml", same_count=False)
    assert "{param: [2, 4, 4], name: relative_position_bias_table}" in imp.text


@pytest.mark.parametrize("optimize", [True, False])
def test_small_gat_imports_entirely(optimize):
    imp, _, _ = _round_trip("gat", optimize, params={"nodes": 12, "features": 16})
    text = imp.text
    assert "{ne: 0.0, name: conv1_7, in: adj}" in text and "{eq: false}" in text    # Not(Equal), Not
    assert "name: conv1_att_src" in text                # a reshaped learned tensor is still a param


def test_gat_at_full_size_is_refused_for_its_eye_constant():
    g = compiler.compile_file(ROOT / "specs" / "gat.yaml")
    model = compiler.to_onnx(g, weights=fresh_weights(g), optimize=False)
    with pytest.raises(OnnxImportError, match=r"node '[^']+' \(Or\): it reads the bool constant '[^']+' of "
                                              r"7,333,264 values as data"):
        import_model(model)


def test_torch_hardswish_relu6_pad_where_roll_import_and_match():
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.act, self.act6, self.gate = nn.Hardswish(), nn.ReLU6(), nn.Hardsigmoid()
            self.fc = nn.Linear(8 * 10 * 10, 5)

        def forward(self, x):
            y = self.act(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")))
            z = self.act6(y) * self.gate(y)
            z = torch.where(z > 0.5, z, F.hardtanh(y, -0.5, 0.5))
            z = torch.roll(F.pad(z, (0, 2, 1, 1), value=0.25), 1, -1)
            return self.fc(z.flatten(1)).clamp(min=-1.0)

    text = _check_torch(Net(), 3 * torch.randn(2, 3, 8, 8), "image")
    for line in ("{op: pad, pad: [1, 1, 1, 1], mode: reflect}", "{op: hardswish, name: act}", "{op: relu6, name: act6}",
                 "{op: hardsigmoid, name: gate, in: act}", "{gt: 0.5, name: gt}",
                 "{op: hardtanh, name: hardtanh, in: act, min_val: -0.5, max_val: 0.5}",
                 "{op: pad, pad: [0, 2, 1, 1], value: 0.25}", "{op: roll, shifts: 1, dims: 3}",
                 "{op: clamp, name: logits, min: -1.0}"):
        assert line in text


# ------------------------------------------------------------------ hand-made graphs against onnxruntime

def _model(nodes, inputs: dict, inits: dict | None = None, opset: int = 18, outputs=("y",)):
    from onnx import TensorProto, helper, numpy_helper
    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    ins = [helper.make_tensor_value_info(k, types[v.dtype], ["N"] + list(v.shape[1:])) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "g", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _against_ort(model, feeds: dict) -> str:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    imp = import_model(model)
    m = Model(imp.graph).eval()
    m.load_state_dict(imp.weights)
    have = m(**feeds)
    for k, v in zip([o.name for o in model.graph.output], want):
        np.testing.assert_allclose(have[k], v, rtol=1e-5, atol=1e-6)
    return imp.text


def _x(*shape: int) -> np.ndarray:
    return (3 * np.random.default_rng(0).standard_normal(shape)).astype(np.float32)


def test_general_hardsigmoid_is_composed():
    from onnx import helper
    text = _against_ort(_model([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2, beta=0.4)],
                               {"x": _x(2, 7)}), {"x": _x(2, 7)})
    assert "{op: mul, value: 0.2}\n  - {op: add, value: 0.4}\n  - {op: hardtanh, name: y, min_val: 0.0}" in text


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    from onnx import helper
    text = _against_ort(_model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)],
                               {"x": _x(2, 8, 3, 3)}), {"x": _x(2, 8, 3, 3)})
    assert ("{pixel_shuffle: 2, name: y}" in text) == (mode == "CRD")
    assert ("{permute: [0, 3, 4, 1, 5, 2]}" in text) == (mode == "DCR")


def test_clip_bounds_as_attributes_and_one_sided():
    from onnx import helper
    old = _model([helper.make_node("Clip", ["x"], ["y"], min=-0.25, max=2.0)], {"x": _x(2, 5)}, opset=6)
    assert "{op: hardtanh, name: y, min_val: -0.25, max_val: 2.0}" in _against_ort(old, {"x": _x(2, 5)})
    new = _model([helper.make_node("Clip", ["x", "", "hi"], ["y"])], {"x": _x(2, 5)},
                 {"hi": np.array(1.5, np.float32)})
    assert "{op: clamp, name: y, max: 1.5}" in _against_ort(new, {"x": _x(2, 5)})


def test_comparison_with_the_constant_first_and_a_2d_index_gather_with_a_negative_index():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Less", ["two", "x"], ["m"]),                   # 2 < x: gt 2
             helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT),
             helper.make_node("Gather", ["x", "idx"], ["z"], axis=1)]
    model = _model(nodes, {"x": _x(2, 5)}, {"two": np.array(2.0, np.float32),
                                            "idx": np.array([[4, 0], [1, -1], [3, 2]], np.int64)}, outputs=("y", "z"))
    text = _against_ort(model, {"x": _x(2, 5)})
    assert "{gt: 2.0}\n  - {cast: float32, name: y}" in text
    assert "{index_select: 1, in: [x, idx]}\n  - {reshape: [N, 3, 2], name: z}" in text


@pytest.mark.parametrize("pads,mode,why", [([0, -1, 0, 1], "constant", r"negative pads \[0, -1, 0, 1\] \(a crop\)"),
                                           ([0, 1, 0, 1], "wrap", r"pad mode 'wrap'")])
def test_pads_specc_cannot_express_are_refused_naming_the_node(pads, mode, why):
    from onnx import helper
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode, name="pad1")], {"x": _x(2, 5)},
                   {"pads": np.array(pads, np.int64)})
    with pytest.raises(OnnxImportError, match=rf"cannot import node 'pad1' \(Pad\): {why}"):
        import_model(model)


def test_clip_with_a_run_time_bound_is_refused_naming_the_node():
    from onnx import helper
    model = _model([helper.make_node("Clip", ["x", "lo"], ["y"], name="clip1")], {"x": _x(2, 5), "lo": _x(1)})
    with pytest.raises(OnnxImportError, match=r"node 'clip1' \(Clip\): its min bound 'lo' is not a constant number"):
        import_model(model)


def test_bool_logic_and_hardswish_as_x_times_hardsigmoid():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Greater", ["x", "zero"], ["p"]), helper.make_node("Less", ["x", "one"], ["q"]),
             helper.make_node("And", ["p", "q"], ["a"]), helper.make_node("Xor", ["p", "q"], ["b"]),
             helper.make_node("Or", ["a", "b"], ["c"]), helper.make_node("Not", ["c"], ["d"]),
             helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT),
             helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1.0 / 6.0, beta=0.5),
             helper.make_node("Mul", ["x", "h"], ["z"])]
    model = _model(nodes, {"x": _x(3, 4)}, {"zero": np.array(0.0, np.float32), "one": np.array(1.0, np.float32)},
                   outputs=("y", "z"))
    text = _against_ort(model, {"x": _x(3, 4)})
    for line in ("{op: mul, name: mul, in: [gt, lt]}", "{op: ne, name: ne, in: [gt, lt]}", "{op: add, in: [mul, ne]}",
                 "{eq: false}\n  - {cast: float32, name: y}", "{op: hardswish, name: z, in: x}"):
        assert line in text
