"""Comparisons, where, cast, arange, pad and roll (issue 12 item 3): what the generic record tests of
tests/test_op_records.py do not cover — broadcasting and dtypes through a spec, computed masks feeding the
ops that take masks, pad and roll configurations against PyTorch (values and gradients) and onnxruntime,
arange's float steps, and bad attributes as errors at their YAML line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.errors import SpecError
from opcheck import gradcheck, onnx_parity, rand, run, torch_parity

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"d_model": 16, "ff": 32, "heads": 2, "layers": 1, "dropout": 0.0}


def _spec(inputs: str, layers: str, outputs: str = "") -> str:
    return f"name: t\ninputs: {{{inputs}}}\nlayers:\n{layers}" + (f"outputs: {outputs}\n" if outputs else "")


def _model(text: str):
    import runtime
    g = compiler.compile_text(text)
    m = runtime.Model(g, seed=0)
    m.eval()
    return g, m


# --------------------------------------------------------------------------- broadcasting and dtypes

def test_comparisons_broadcast_as_add_and_give_bool():
    g, m = _model(_spec("a: [N, 1, 4], b: [3, 1]", "  - {op: lt, name: c, in: [a, b]}\n"
                                                    "  - {op: add, name: s, in: [a, b]}\n", "[c, s]"))
    assert g.outputs["c"].shape == g.outputs["s"].shape == ("N", 3, 4)
    assert g.outputs["c"].dtype == "bool"
    a, b = rand(2, 1, 4).astype(np.float32), rand(3, 1).astype(np.float32)
    out = m(a=a, b=b)
    np.testing.assert_array_equal(out["c"], a < b)
    assert out["c"].dtype == np.bool_


def test_a_comparison_that_does_not_broadcast_names_both_shapes():
    with pytest.raises(SpecError) as e:
        compiler.compile_text(_spec("a: [N, 4], b: [N, 3]", "  - {op: eq, name: c, in: [a, b]}\n"))
    text = e.value.render()
    assert "inputs of shapes N×4 and N×3 do not broadcast" in text and "broadcasting aligns" in text


@pytest.mark.parametrize("op, x, value, want", [
    ("eq", np.array([0, 3, 0, 5]), 0, [True, False, True, False]),
    ("ne", np.array([0, 3, 0, 5]), 0, [False, True, False, True]),
    ("ge", np.array([0, 3, 0, 5]), 3, [False, True, False, True]),
    ("lt", np.array([0, 3, 0, 5]), 2.5, [True, False, True, False]),     # int64 against a float value
    ("le", np.array([True, False]), 0, [False, True]),                   # bool against an integer
    ("gt", np.array([0.5, -1.0], np.float32), 0, [True, False]),
    ("eq", np.array([16777217, 3]), 16777216.0, [True, False]),         # compared in float32, as torch
])
def test_a_scalar_value_compares_like_pytorch(op, x, value, want):
    torch = pytest.importorskip("torch")
    dtype = {"i": "int64", "b": "bool", "f": "float32"}[x.dtype.kind]
    g, m = _model(_spec(f"x: {{shape: [{len(x)}], dtype: {dtype}}}", f"  - {{op: {op}, name: c, in: x, value: {value}}}\n"))
    got = m(x=x)["c"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, getattr(torch, op)(torch.from_numpy(x), value).numpy())
    onnx_parity(op, {"value": value}, [x, None])


def test_where_promotes_and_masks_the_gradient():
    import runtime
    from runtime.tensor import Tensor
    g = compiler.compile_text(_spec("c: {shape: [N, 3], dtype: bool}, x: [N, 3], i: {shape: [3], dtype: int64}",
                                    "  - {op: where, name: w, in: [c, x, i]}\n"
                                    "  - {op: where, name: f, in: [c, i], value: 0.5}\n", "[w, f]"))
    assert g.outputs["w"].dtype == "float32" and g.outputs["f"].dtype == "float32"
    c = np.array([[True, False, True], [False, False, True]])
    x = Tensor(rand(2, 3).astype(np.float32), requires_grad=True)
    i = np.array([7, 8, 9])
    out = runtime.Model(g).forward(c=c, x=x, i=i)
    np.testing.assert_array_equal(out["w"].data, np.where(c, x.data, i))
    np.testing.assert_array_equal(out["f"].data, np.where(c, i, 0.5))
    out["w"].backward(np.full((2, 3), 2.0, np.float32))
    np.testing.assert_array_equal(x.grad, np.where(c, 2.0, 0.0))


def test_where_refuses_a_condition_that_is_not_bool():
    with pytest.raises(SpecError) as e:
        compiler.compile_text(_spec("c: [N, 3], x: [N, 3]", "  - {op: where, name: w, in: [c, x, x]}\n"))
    assert e.value.diagnostics[0].loc.line == 4
    assert "needs a bool condition" in e.value.render() and "op: gt" in e.value.render()


def test_cast_passes_the_gradient_float_to_float_only():
    import runtime
    from runtime.tensor import Tensor
    g = compiler.compile_text(_spec("x: [N, 3]", "  - {op: cast, name: i, in: x, dtype: int64}\n"
                                                 "  - {op: cast, name: back, in: i, dtype: float32}\n"
                                                 "  - {op: cast, name: same, in: x, dtype: float32}\n"
                                                 "  - {op: mul, name: y, in: [back, same]}\n", "[i, y]"))
    assert g.outputs["i"].dtype == "int64"
    x = Tensor(np.array([[1.7, -1.7, 2.2]], np.float32), requires_grad=True)
    out = runtime.Model(g).forward(x=x)
    np.testing.assert_array_equal(out["i"].data, [[1, -1, 2]])            # truncated toward zero, as torch
    out["y"].backward(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(x.grad, [[1.0, -1.0, 2.0]])             # only through the float path


# --------------------------------------------------------------------------- computed masks into mask consumers

def test_a_computed_padding_mask_gives_the_transformer_classifier_fed_that_mask():
    """tests/specs/transformer_computed_mask.yaml (eq on the tokens) against specs/transformer_classifier.yaml
    given `padding_mask = tokens == 0`: same parameters, same logits, same loss gradients."""
    import runtime
    given = compiler.compile_file(ROOT / "specs/transformer_classifier.yaml", params=SMALL)
    computed = compiler.compile_file(ROOT / "tests/specs/transformer_computed_mask.yaml", params=SMALL)
    assert "padding_mask" in given.inputs and "padding_mask" not in computed.inputs
    assert next(n for n in computed.nodes if n.name == "padding_mask").out.dtype == "bool"
    a, b = runtime.Model(given, seed=0), runtime.Model(computed, seed=0)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 16, (3, 6))
    tokens[0, 4:] = 0
    tokens[2, 2:] = 0
    label = np.array([0, 3, 1])
    outs = []
    for m, extra in ((a, {"padding_mask": tokens == 0}), (b, {})):
        m.zero_grad()
        res = m.forward(tokens=tokens, label=label, outputs=["logits", "loss"], **extra)
        res["loss"].backward()
        outs.append((res["logits"].data, {k: t.grad for k, t in m.parameters().items()}))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6, atol=1e-6)
    for k, gr in outs[0][1].items():
        np.testing.assert_allclose(gr, outs[1][1][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_a_computed_mask_reproduces_cross_entropy_ignore_index():
    """ne + cast + mul + sum / sum: a masked mean of per-token losses equals cross_entropy's ignore_index."""
    import runtime
    from runtime.tensor import Tensor
    text = _spec("logits: [N, 5, T], target: {shape: [N, T], dtype: int64}",
                 "  - {op: cross_entropy, name: each, in: [logits, target], reduction: none}\n"
                 "  - {op: ne, name: real, in: target, value: 0}\n"
                 "  - {op: cast, name: weight, in: real, dtype: float32}\n"
                 "  - {op: mul, name: kept, in: [each, weight]}\n"
                 "  - {op: sum, name: total, in: kept}\n"
                 "  - {op: sum, name: count, in: weight}\n"
                 "  - {op: div, name: masked, in: [total, count]}\n"
                 "  - {op: cross_entropy, name: ignored, in: [logits, target], ignore_index: 0}\n",
                 "[masked, ignored]")
    g = compiler.compile_text(text)
    x = rand(2, 5, 4).astype(np.float32)
    t = np.array([[0, 1, 4, 0], [2, 0, 3, 3]])
    grads = []
    for out in ("masked", "ignored"):
        logits = Tensor(x.copy(), requires_grad=True)
        res = runtime.Model(g).forward(logits=logits, target=t, outputs=[out])[out]
        res.backward()
        grads.append((res.data, logits.grad))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)


def test_a_computed_mask_feeds_scaled_dot_product_attention_and_onnx():
    """A key-padding mask made by `eq` (bool) into SDPA: keys at padding get no weight, in the runtime
    and in onnxruntime alike."""
    import onnxruntime as ort
    text = _spec("q: [N, 3, 4], tokens: {shape: [N, 5], dtype: int64}, kv: [N, 5, 4]",
                 "  - {op: eq, name: pad, in: tokens, value: 0}\n"
                 "  - {op: scaled_dot_product_attention, name: a, in: [q, kv, kv, pad]}\n", "[a]")
    g, m = _model(text)
    q, kv = rand(2, 3, 4).astype(np.float32), rand(2, 5, 4).astype(np.float32)
    tokens = np.array([[4, 5, 0, 0, 0], [1, 2, 3, 4, 0]])
    got = m(q=q, tokens=tokens, kv=kv)["a"]
    kv2 = kv.copy()
    kv2[tokens == 0] = 100.0                                   # what sits at padding does not matter
    np.testing.assert_allclose(m(q=q, tokens=tokens, kv=kv2)["a"], got, rtol=1e-6)
    proto = compiler.to_onnx(g, weights=m.state_dict())
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"q": q, "tokens": tokens, "kv": kv})[0], got, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- pad, roll, arange against torch

PADS = [((2, 3, 5), [1, 2], "constant", 1.5), ((2, 3, 5), [0, 0, 2, 1], "constant", None),
        ((2, 3, 4, 5), [1, 3, 2, 0, 1, 1], "constant", None),
        ((3, 5), [4, 2], "reflect", None), ((2, 3, 5), [2, 1, 1, 2], "reflect", None),
        ((1, 2, 3, 4, 5), [1, 2, 2, 0, 1, 1], "reflect", None), ((2, 4, 5), [4, 0], "reflect", None),
        ((3, 5), [3, 6], "replicate", None), ((2, 2, 3, 4), [1, 2, 3, 0], "replicate", None),
        ((2, 3, 4, 5), [2, 2, 1, 1, 3, 0], "replicate", None)]


@pytest.mark.parametrize("shape, pad, mode, value", PADS, ids=[f"{m}-{p}" for _, p, m, _ in PADS])
def test_pad_modes_match_torch_and_onnxruntime(shape, pad, mode, value):
    pytest.importorskip("torch")
    attrs = {"pad": pad, "mode": mode} | ({} if value is None else {"value": value})
    x = rand(*shape)
    torch_parity("pad", attrs, [x])
    gradcheck("pad", attrs, [x])
    onnx_parity("pad", attrs, [x])


ROLLS = [((5,), {"shifts": -2, "dims": 0}), ((2, 5), {"shifts": 12, "dims": -1}),
         ((2, 3, 4), {"shifts": [-1, -5, 2], "dims": [0, 1, 2]}), ((2, 3, 4), {"shifts": [1, -2], "dims": [2, 2]}),
         ((2, 3, 4), {"shifts": -7}), ((3, 4), {"shifts": [0], "dims": [1]})]


@pytest.mark.parametrize("shape, attrs", ROLLS, ids=[str(a) for _, a in ROLLS])
def test_roll_with_negative_shifts_and_several_dims_matches_torch_and_onnxruntime(shape, attrs):
    pytest.importorskip("torch")
    x = rand(*shape)
    torch_parity("roll", attrs, [x])
    gradcheck("roll", attrs, [x])
    onnx_parity("roll", attrs, [x])


@pytest.mark.parametrize("attrs", [{"end": 1.0, "step": 0.1}, {"start": 1, "end": 2.5, "step": 0.5},
                                   {"start": -1.0, "end": 1.0, "step": 0.3}, {"start": 2.0, "end": -1.0, "step": -0.7},
                                   {"start": 0.1, "end": 0.7, "step": 0.2}, {"end": 7, "step": 3},
                                   {"start": 5, "end": -5, "step": -4, "dtype": "float32"}])
def test_arange_with_float_steps_matches_torch(attrs):
    torch = pytest.importorskip("torch")
    outs, _, inf = run("arange", attrs, [])
    a = {"start": 0, "step": 1} | attrs
    want = torch.arange(a["start"], a["end"], a["step"], dtype=getattr(torch, attrs.get("dtype", "int64")
                        if all(isinstance(v, int) for v in (a["start"], a["end"], a["step"])) else "float32"))
    assert outs[0].shape == tuple(want.shape) == tuple(inf.outputs[0].shape)
    assert str(outs[0].dtype) == inf.outputs[0].dtype == str(want.dtype).replace("torch.", "")
    np.testing.assert_array_equal(outs[0], want.numpy())
    onnx_parity("arange", attrs, [])


def test_arange_positions_index_an_embedding():
    g, m = _model(_spec("x: [N, 5, 8]", "  - {op: arange, name: positions, end: 5}\n"
                                        "  - {op: embedding, name: pos, in: positions, num_embeddings: 5, "
                                        "embedding_dim: 8}\n  - {op: add, name: y, in: [x, pos]}\n", "[y]"))
    x = rand(2, 5, 8).astype(np.float32)
    np.testing.assert_allclose(m(x=x)["y"], x + m.state_dict()["pos.weight"][None], rtol=1e-6)


# --------------------------------------------------------------------------- export-torch

def test_export_torch_writes_infinite_values_as_float_calls(tmp_path):
    pytest.importorskip("torch")
    from runtime.torch_backend.codegen import generate
    g = compiler.compile_text(_spec("x: [N, 3]", "  - {op: gt, name: c, in: x, value: 0.0}\n"
                                                 "  - {op: where, name: w, in: [c, x], value: -.inf}\n", "[w]"))
    src = generate(g, "t.yaml").source
    assert "torch.where(c, x, float('-inf'))" in src.replace("self.", "")


# --------------------------------------------------------------------------- errors at the attribute's line

BAD = [
    ("x: [N, 3]", "{op: eq, name: n, in: x}", "needs a second input or a `value`", "value: 0"),
    ("x: [N, 3]", "{op: lt, name: n, in: [x, x], value: 1}", "got both a second input and `value: 1`", "drop"),
    ("x: [N, 3]", "{op: cast, name: n, in: x, dtype: float16}", "float16", "float32"),
    ("x: [N, 3]", "{op: arange, name: n, end: 5, step: 0}", "step must not be 0", None),
    ("x: [N, 3]", "{op: arange, name: n, start: 5, end: 0}", "is empty", "swap start and end"),
    ("x: [N, 3]", "{op: arange, name: n, end: 2.5, dtype: int64}", "dtype int64 needs integer", "float32"),
    ("x: [N, 3]", "{op: arange, name: n, end: 100000000000}", "more than the limit of 10,000,000", None),
    ("x: [N, 3]", "{op: pad, name: n, pad: [1, 2, 3]}", "must hold pairs", "last dimension"),
    ("x: [N, 3]", "{op: pad, name: n, pad: [1, -1]}", "negative size", "use slice"),
    ("x: [N, 3]", "{op: pad, name: n, pad: [1, 1, 1, 1, 1, 1]}", "pads 3 dimensions, but the input has only 2",
     None),
    ("x: [N, 2, 3]", "{op: pad, name: n, pad: [3, 0], mode: reflect}", "each size below", "replicate"),
    ("x: [N, 2, 3]", "{op: pad, name: n, pad: [1, 0], mode: reflect, value: 1}", "takes no `value`", None),
    ("x: [N, 2, 3]", "{op: pad, name: n, pad: [1, 1, 1, 1, 1, 1], mode: replicate}", "last 1, 2 or 3", "R-1"),
    ("x: [N, 3]", "{op: pad, name: n, pad: [0, 0, 1, 1]}", "symbol 'N'", "the batch N cannot grow"),
    ("x: {shape: [N, 3], dtype: int64}", "{op: pad, name: n, pad: [1, 1], value: 0.5}", "does not fit the int64",
     None),
    ("x: [N, 3]", "{op: roll, name: n, shifts: [1, 2], dims: 1}", "2 shift(s) [1, 2] but 1 dim(s)", None),
    ("x: [N, 3]", "{op: roll, name: n, shifts: 1, dims: 0}", "symbol 'N'", "not the batch N"),
    ("x: [N, 3]", "{op: roll, name: n, shifts: 1}", "flattens the input", "dims: -1"),
    ("x: [N, 3]", "{op: roll, name: n, shifts: 1, dims: 2}", "dims=2 is out of range", None),
]


@pytest.mark.parametrize("inputs, layer, words, hint", BAD, ids=[b[1] for b in BAD])
def test_bad_attributes_are_errors_at_the_layer_line(inputs, layer, words, hint, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_spec(inputs, f"  - {layer}\n"))
    with pytest.raises(SpecError) as e:
        compiler.compile_file(path)
    d = e.value.diagnostics[0]
    assert d.loc is not None and d.loc.line == 4, e.value.render()
    text = e.value.render()
    assert "bad.yaml:4:" in text, text
    assert words in text, text
    if hint:
        assert hint in text, text


def test_specc_check_exits_1_with_the_position(tmp_path, capsys):
    from cli.main import main
    path = tmp_path / "bad.yaml"
    path.write_text(_spec("x: [N, 3]", "  - {op: pad, name: n, pad: [1, -1]}\n"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:4:" in err and "negative size" in err and "Traceback" not in err


def test_onnx_import_turns_a_cast_into_the_cast_op():
    """An ONNX Cast to int64 / bool (refused before specc had a cast op) imports as `cast`."""
    import onnx
    from onnx import TensorProto, helper

    from compiler.onnx_import import import_model
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 3])
    z = helper.make_tensor_value_info("z", TensorProto.BOOL, ["N", 3])
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64),
             helper.make_node("Cast", ["y"], ["z"], to=TensorProto.BOOL)]
    model = helper.make_model(helper.make_graph(nodes, "c", [x], [y, z]), opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    imp = import_model(model, name="c")
    assert [n.op for n in imp.graph.nodes] == ["cast", "cast"]
    import runtime
    data = np.array([[1.7, -0.2, 0.0]], np.float32)
    out = runtime.Model(imp.graph)(x=data)
    got = list(out.values())
    np.testing.assert_array_equal(got[0], [[1, 0, 0]])
    np.testing.assert_array_equal(got[1], [[True, False, False]])
