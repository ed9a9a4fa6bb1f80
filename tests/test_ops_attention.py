import math

import numpy as np
import pytest

from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run


def bmask(*shape, p=0.3, seed=0):
    """A boolean mask (True = ignore) that never ignores key 0, so no row is fully masked."""
    m = np.random.default_rng(seed).random(shape) < p
    m[..., 0] = False
    return m


# --- a symbolic-shape ONNX check (opcheck's onnx_parity only uses concrete shapes) ---------------

def onnx_symbolic(name, attrs, arrays, types, opset=18, rtol=1e-4, atol=1e-5, ports=None):
    """Lower with symbolic input types (e.g. ('N', 'T', 8)), run onnxruntime on `arrays`, compare to the kernel."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from compiler.ir import Node
    from compiler.onnx import LOWERINGS, Builder
    from compiler.onnx.registry import DTYPES
    from compiler.ops import OPS

    opdef = OPS[name]
    a = opdef.attrs.model_validate(attrs)
    types = [None if t is None else TensorType(tuple(t), "bool" if arr.dtype == bool else "float32")
             for t, arr in zip(types, arrays)]
    inf = opdef.infer(a, types)
    arrays = [None if v is None else (v if v.dtype == bool else v.astype(np.float32)) for v in arrays]
    params = make_params(name, attrs, arrays, dtype=np.float32)
    want, _, _ = run(name, attrs, arrays, params)
    b = Builder(opset)
    x, graph_inputs, feeds = [], [], {}
    for i, (v, t) in enumerate(zip(arrays, types)):
        if v is None:
            x.append(None)
            continue
        nm = f"in{i}"
        b.reserve(nm)
        for ax, d in enumerate(t.shape):
            if isinstance(d, str):
                b.symbols.setdefault(d, (nm, ax))
        graph_inputs.append(helper.make_tensor_value_info(nm, DTYPES[t.dtype], list(t.shape)))
        feeds[nm] = v
        x.append(nm)
    p = [b.add_initializer(f"p.{s.name}", arr) for s, arr in zip(inf.params, params)]
    node = Node(name=name, op=name, attrs=a, inputs=[], outputs=dict(zip(opdef.ports, inf.outputs)),
                params=inf.params)
    b.ins, b.scope = types, name
    res = LOWERINGS[name](b, node, x, p)
    res = [res] if isinstance(res, str) else list(res)
    outs, checks = [], []
    for k, (val, t, w) in enumerate(zip(res, inf.outputs, want)):
        if val is None or w is None or (ports is not None and k not in ports):
            continue
        o = b.op("Identity", [val], outputs=[f"out{k}"])
        outs.append(helper.make_tensor_value_info(o, DTYPES[t.dtype], list(t.shape)))
        checks.append((o, w))
    model = helper.make_model(helper.make_graph(b.nodes, name, graph_inputs, outs, b.initializers),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run([c[0] for c in checks], feeds)
    for (nm, w), g in zip(checks, got):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{name} {nm}")
    return model


# --- scaled_dot_product_attention: shape rule ---------------------------------------------------

def test_sdpa_shape_and_macs():
    _, _, inf = infer("scaled_dot_product_attention", {}, [("N", 2, 5, 8), ("N", 2, 6, 8), ("N", 2, 6, 3)])
    assert inf.outputs[0].shape == ("N", 2, 5, 3) and inf.params == []
    assert inf.macs == 2 * 5 * 6 * (8 + 3)
    # leading dims broadcast; a rank-2 mask with batched inputs is a key-padding mask [N, Tk]
    _, _, inf = infer("scaled_dot_product_attention", {},
                      [TensorType((4, 2, 5, 8)), TensorType((4, 1, 6, 8)), TensorType((1, 6, 3)),
                       TensorType((4, 6), "bool")])
    assert inf.outputs[0].shape == (4, 2, 5, 3)


def test_sdpa_symbolic_feature_size_needs_a_scale():
    """A symbolic d checked clean, then the export failed (its default scale 1/√d is a constant; fuzzing)."""
    with pytest.raises(ShapeError) as e:
        infer("scaled_dot_product_attention", {}, [(4, "N"), (4, "N"), (4, "N")])
    assert e.value.attr == "scale" and "symbol 'N'" in e.value.message
    _, _, inf = infer("scaled_dot_product_attention", {"scale": 0.5}, [(4, "N"), (4, "N"), (4, "N")])
    assert inf.outputs[0].shape == (4, "N")


def test_sdpa_errors():
    with pytest.raises(ShapeError) as e:
        infer("scaled_dot_product_attention", {}, [("N", 5, 8), ("N", 6, 7), ("N", 6, 3)])
    assert "8" in e.value.message and "7" in e.value.message and "feature size" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("scaled_dot_product_attention", {}, [("N", 5, 8), ("N", 6, 8), ("N", 4, 3)])
    assert "6" in e.value.message and "4" in e.value.message
    with pytest.raises(ShapeError) as e:                     # not boolean
        infer("scaled_dot_product_attention", {}, [(2, 5, 8), (2, 6, 8), (2, 6, 3), TensorType((2, 6))])
    assert "boolean" in e.value.message and "True = ignore" in e.value.message
    with pytest.raises(ShapeError) as e:                     # [Tq, Tk] read as key padding [N, Tk]
        infer("scaled_dot_product_attention", {},
              [(2, 5, 8), (2, 6, 8), (2, 6, 3), TensorType((5, 6), "bool")])
    assert "key-padding" in e.value.message and "[1, Tq, Tk]" in e.value.message
    with pytest.raises(ShapeError):
        infer("scaled_dot_product_attention", {}, [(5, 8), (6, 8), (6, 3), TensorType((5, 5), "bool")])


# --- scaled_dot_product_attention: gradients and ONNX -------------------------------------------

SDPA_CASES = [
    # (q, k, v shapes, mask, attrs)
    (((2, 3, 4), (2, 5, 4), (2, 5, 3)), None, {}),
    (((2, 3, 4), (2, 5, 4), (2, 5, 3)), bmask(2, 5), {}),                       # key padding [N, Tk]
    (((2, 3, 4), (2, 5, 4), (2, 5, 3)), bmask(1, 3, 5), {"causal": False, "scale": 0.7}),
    (((2, 4, 4), (2, 4, 4), (2, 4, 2)), bmask(2, 4, seed=3), {"causal": True}),
    (((2, 2, 3, 4), (2, 1, 5, 4), (1, 5, 3)), bmask(2, 5, seed=1), {}),        # broadcast leading dims
    (((3, 4), (5, 4), (5, 2)), bmask(3, 5, seed=2), {"causal": True}),        # unbatched, [Tq, Tk] mask
]


@pytest.mark.parametrize("shapes,mask,attrs", SDPA_CASES)
def test_sdpa_gradcheck(shapes, mask, attrs):
    gradcheck("scaled_dot_product_attention", attrs, [rand(*s) for s in shapes] + [mask])


@pytest.mark.parametrize("shapes,mask,attrs", SDPA_CASES)
def test_sdpa_onnx(shapes, mask, attrs):
    onnx_parity("scaled_dot_product_attention", attrs, [rand(*s) for s in shapes] + [mask])


def test_sdpa_onnx_symbolic_causal():
    q, k, v = rand(2, 5, 4), rand(2, 5, 4), rand(2, 5, 3)
    onnx_symbolic("scaled_dot_product_attention", {"causal": True}, [q, k, v, bmask(2, 5)],
                  [("N", "T", 4), ("N", "T", 4), ("N", "T", 3), ("N", "T")])


def test_sdpa_fully_masked_row_is_zero():
    m = np.zeros((2, 5), bool)
    m[1] = True
    (y,), _, _ = run("scaled_dot_product_attention", {}, [rand(2, 3, 4), rand(2, 5, 4), rand(2, 5, 3), m])
    assert np.all(np.isfinite(y)) and np.all(y[1] == 0) and np.any(y[0] != 0)
    gradcheck("scaled_dot_product_attention", {}, [rand(2, 3, 4), rand(2, 5, 4), rand(2, 5, 3), m])


def test_sdpa_keeps_float32():
    (y,), _, _ = run("scaled_dot_product_attention", {"causal": True},
                     [rand(2, 3, 4).astype(np.float32), rand(2, 3, 4).astype(np.float32),
                      rand(2, 3, 2).astype(np.float32), bmask(2, 3)])
    assert y.dtype == np.float32


@pytest.mark.parametrize("shapes,mask,attrs", SDPA_CASES[:5])
def test_sdpa_torch(shapes, mask, attrs):
    torch = pytest.importorskip("torch")
    q, k, v = (rand(*s) for s in shapes)
    (y,), bwd, _ = run("scaled_dot_product_attention", attrs, [q, k, v, mask])
    g = rand(*y.shape)
    gq, gk, gv, _ = bwd(g)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    am = None
    if mask is not None:                                     # torch: True = attend (the inverse)
        m = mask.reshape(mask.shape[0], *([1] * len(lead)), mask.shape[1]) if mask.ndim == 2 else mask
        am = torch.tensor(~m)
    causal = attrs.get("causal", False)
    if causal and am is not None:                            # torch takes one or the other
        am = am & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        causal = False
    # torch's SDPA wants matching batch dims
    tq2, tk2, tv2 = (t.expand(*lead, *t.shape[-2:]) for t in (tq, tk, tv))
    ref = torch.nn.functional.scaled_dot_product_attention(tq2, tk2, tv2, attn_mask=am, is_causal=causal,
                                                           scale=attrs.get("scale"))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-7, atol=1e-9)
    for ours, t in ((gq, tq), (gk, tk), (gv, tv)):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-7, atol=1e-9)


# --- multi_head_attention: shape rule -----------------------------------------------------------

def test_mha_shape_params_macs():
    opdef, _, inf = infer("multi_head_attention", {"num_heads": 2}, [("N", 5, 8)])
    assert opdef.ports == ("out", "weights") and opdef.primary == "num_heads"
    assert [t.shape for t in inf.outputs] == [("N", 5, 8), ("N", 5, 5)]
    assert [(p.name, p.shape, p.init.kind) for p in inf.params] == [
        ("in_proj_weight", (24, 8), "xavier_uniform"), ("in_proj_bias", (24,), "zeros"),
        ("out_proj.weight", (8, 8), "kaiming_uniform"), ("out_proj.bias", (8,), "zeros")]
    assert inf.params[2].init.kw["a"] == pytest.approx(math.sqrt(5))
    assert inf.macs == 5 * 64 + 2 * 5 * 64 + 2 * 5 * 5 * 8 + 5 * 64
    _, _, inf = infer("multi_head_attention", {"num_heads": 2, "bias": False, "embed_dim": 8},
                      [("N", 3, 8), ("N", 7, 8), None, TensorType(("N", 7), "bool")])
    assert [t.shape for t in inf.outputs] == [("N", 3, 8), ("N", 3, 7)]
    assert [p.name for p in inf.params] == ["in_proj_weight", "out_proj.weight"]


def test_mha_params_match_torch_names_and_shapes():
    torch = pytest.importorskip("torch")
    m = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    _, _, inf = infer("multi_head_attention", {"num_heads": 2}, [("N", 5, 8)])
    assert {p.name: p.shape for p in inf.params} == {k: tuple(v.shape) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("attrs,ins,attr,words", [
    ({"num_heads": 3}, [("N", 5, 8)], "num_heads", ["divisible", "8", "3"]),
    ({"num_heads": 2, "embed_dim": 16}, [("N", 5, 8)], "embed_dim", ["16", "8"]),
    ({"num_heads": 2, "dropout": 1.0}, [("N", 5, 8)], "dropout", ["dropout"]),
    ({"num_heads": 2}, [("N", 5, 8), ("N", 6, 4)], None, ["kdim", "not supported"]),
    ({"num_heads": 2}, [("N", 5, 8), ("N", 6, 8), ("N", 6, 3)], None, ["vdim", "not supported"]),
    ({"num_heads": 2}, [("N", 5, 8), ("N", 6, 8), ("N", 4, 8)], None, ["6", "4"]),
    ({"num_heads": 2}, [(5, 8)], None, ["[N, T, E]"]),
    ({"num_heads": 2}, [("N", 5, 8), None, None, TensorType(("N", 6), "bool")], None, ["key_padding_mask"]),
    ({"num_heads": 2}, [("N", 5, 8), None, None, TensorType(("N", 5))], None, ["boolean"]),
])
def test_mha_errors(attrs, ins, attr, words):
    with pytest.raises(ShapeError) as e:
        infer("multi_head_attention", attrs, ins)
    assert e.value.attr == attr
    for w in words:
        assert w in e.value.message


# --- multi_head_attention: gradients and ONNX ---------------------------------------------------

MHA_CASES = [
    # (attrs, query, key, value, mask)
    ({"num_heads": 2}, (2, 3, 4), None, None, None),
    ({"num_heads": 2, "causal": True}, (2, 4, 4), None, None, (2, 4)),
    ({"num_heads": 1}, (2, 3, 4), (2, 5, 4), None, (2, 5)),
    ({"num_heads": 4, "bias": False}, (2, 3, 4), (2, 5, 4), (2, 5, 4), None),
    ({"num_heads": 2, "causal": True}, (1, 3, 6), (1, 5, 6), (1, 5, 6), (1, 5)),
]


def _mha_inputs(q, k, v, m, seed=0):
    return [rand(*q), None if k is None else rand(*k), None if v is None else rand(*v),
            None if m is None else bmask(*m, seed=seed)]


@pytest.mark.parametrize("attrs,q,k,v,m", MHA_CASES)
def test_mha_gradcheck(attrs, q, k, v, m):
    gradcheck("multi_head_attention", attrs, _mha_inputs(q, k, v, m))


def test_mha_gradcheck_dropout_training():
    gradcheck("multi_head_attention", {"num_heads": 2, "dropout": 0.3}, [rand(2, 3, 4), None, None, None],
              training=True)


def test_mha_same_array_for_query_key_value():
    """key and value given as the query itself: each argument gets its own share of the gradient."""
    x = rand(2, 3, 4)
    attrs = {"num_heads": 2}
    (o1, w1), b1, _ = run("multi_head_attention", attrs, [x, None, None, None])
    (o2, w2), b2, _ = run("multi_head_attention", attrs, [x, x, x, None])
    (o3, w3), b3, _ = run("multi_head_attention", attrs, [x, x.copy(), x.copy(), None])
    np.testing.assert_allclose(o1, o2, atol=1e-12)
    np.testing.assert_allclose(o1, o3, atol=1e-12)
    np.testing.assert_allclose(w1, w3, atol=1e-12)
    g = (rand(*o1.shape), rand(*w1.shape))
    g1, g2, g3 = b1(g), b2(g), b3(g)
    assert g1[1] is None and g1[2] is None
    np.testing.assert_allclose(g1[0], g2[0] + g2[1] + g2[2], atol=1e-12)
    for a, b in zip(g2, g3):
        if a is not None:
            np.testing.assert_allclose(a, b, atol=1e-12)
    gradcheck("multi_head_attention", attrs, [x, x, x, None])


def test_mha_ports_computed_only_when_wanted():
    x = rand(2, 3, 4)
    (o, w), bwd, _ = run("multi_head_attention", {"num_heads": 2}, [x, None, None, None], wanted=(True, False))
    assert w is None and o.shape == (2, 3, 4)
    gx = bwd((rand(2, 3, 4), None))[0]
    assert gx.shape == x.shape
    (o, w), bwd, _ = run("multi_head_attention", {"num_heads": 2}, [x, None, None, None], wanted=(False, True))
    assert o is None and w.shape == (2, 3, 3)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    gx = bwd((None, rand(2, 3, 3)))[0]
    assert gx.shape == x.shape and np.any(gx != 0)


def test_mha_dropout_only_in_training():
    x = rand(2, 6, 4).astype(np.float32)
    attrs = {"num_heads": 2, "dropout": 0.5}
    p = make_params("multi_head_attention", attrs, [x], dtype=np.float32)
    (o_eval, w_eval), _, _ = run("multi_head_attention", attrs, [x, None, None, None], p)
    (o_ref, w_ref), _, _ = run("multi_head_attention", {"num_heads": 2}, [x, None, None, None], p)
    np.testing.assert_allclose(o_eval, o_ref)
    (o_tr, w_tr), _, _ = run("multi_head_attention", attrs, [x, None, None, None], p, training=True)
    assert o_tr.dtype == np.float32 and not np.allclose(o_tr, o_eval)
    assert not np.allclose(w_tr.sum(-1), 1.0)               # the port shows the dropped weights


def test_mha_fully_masked_row_gives_bias_not_nan():
    m = np.zeros((2, 3), bool)
    m[0] = True
    (o, w), _, _ = run("multi_head_attention", {"num_heads": 2}, [rand(2, 3, 4), None, None, m])
    assert np.all(np.isfinite(o)) and np.all(w[0] == 0)


@pytest.mark.parametrize("attrs,q,k,v,m", MHA_CASES)
def test_mha_onnx(attrs, q, k, v, m):
    onnx_parity("multi_head_attention", attrs, _mha_inputs(q, k, v, m))


def test_mha_onnx_symbolic_causal_opset17():
    x, m = rand(2, 5, 4), bmask(2, 5)
    onnx_symbolic("multi_head_attention", {"num_heads": 2, "causal": True}, [x, None, None, m],
                  [("N", "T", 4), None, None, ("N", "T")], opset=17)


MHA_TORCH = [
    ({"num_heads": 2}, (2, 3, 4), None, None, (2, 3)),
    ({"num_heads": 2, "causal": True}, (2, 4, 4), None, None, None),
    ({"num_heads": 2}, (2, 3, 4), (2, 5, 4), None, (2, 5)),
    ({"num_heads": 4, "bias": False}, (2, 3, 8), (2, 5, 8), (2, 5, 8), (2, 5)),
]


@pytest.mark.parametrize("attrs,q,k,v,m", MHA_TORCH)
def test_mha_torch(attrs, q, k, v, m):
    torch = pytest.importorskip("torch")
    ins = _mha_inputs(q, k, v, m, seed=4)
    e = q[-1]
    params = make_params("multi_head_attention", attrs, ins, seed=3)
    (out, w), bwd, inf = run("multi_head_attention", attrs, ins, params)
    g = (rand(*out.shape), rand(*w.shape))
    grads = bwd(g)
    mod = torch.nn.MultiheadAttention(e, attrs["num_heads"], bias=attrs.get("bias", True),
                                      batch_first=True).double()
    mod.load_state_dict({s.name: torch.tensor(p) for s, p in zip(inf.params, params)})
    tq = torch.tensor(ins[0], requires_grad=True)
    tk = tq if ins[1] is None else torch.tensor(ins[1], requires_grad=True)
    tv = tk if ins[2] is None else torch.tensor(ins[2], requires_grad=True)
    am = None
    if attrs.get("causal"):
        am = torch.triu(torch.ones(q[1], tk.shape[1], dtype=torch.bool), 1)     # True = not allowed
    kpm = None if ins[3] is None else torch.tensor(ins[3])
    ro, rw = mod(tq, tk, tv, key_padding_mask=kpm, attn_mask=am, need_weights=True, average_attn_weights=True)
    (ro * torch.tensor(g[0])).sum().add((rw * torch.tensor(g[1])).sum()).backward()
    np.testing.assert_allclose(out, ro.detach().numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(w, rw.detach().numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(grads[0], tq.grad.numpy(), rtol=1e-7, atol=1e-9)
    if ins[1] is not None:
        np.testing.assert_allclose(grads[1], tk.grad.numpy(), rtol=1e-7, atol=1e-9)
    if ins[2] is not None:
        np.testing.assert_allclose(grads[2], tv.grad.numpy(), rtol=1e-7, atol=1e-9)
    named = dict(mod.named_parameters())
    for s, gp in zip(inf.params, grads[4:]):
        np.testing.assert_allclose(gp, named[s.name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=s.name)


# --- positional_encoding ------------------------------------------------------------------------

def test_pe_shape_no_params():
    _, _, inf = infer("positional_encoding", {}, [("N", "T", 16)])
    assert inf.outputs[0].shape == ("N", "T", 16) and inf.params == []
    assert inf.macs == 16


@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_pe_refuses_a_non_float_input(dtype):
    """The runtime added float sines to int/bool inputs (a float result for an inferred int/bool type) and the
    ONNX Add refused bool (found by tools/fuzz.py)."""
    with pytest.raises(ShapeError, match=f"floating-point input, but its input has dtype {dtype}"):
        infer("positional_encoding", {}, [TensorType(("N", 5, 16), dtype)])


def test_pe_errors():
    with pytest.raises(ShapeError) as e:
        infer("positional_encoding", {"max_len": 10}, [("N", 11, 16)])
    assert e.value.attr == "max_len" and "10" in e.value.message and "11" in e.value.message
    with pytest.raises(ShapeError):
        infer("positional_encoding", {}, [("N", 16)])
    with pytest.raises(Exception):
        infer("positional_encoding", {"kind": "learned"}, [("N", 5, 16)])
    import runtime.kernels as kernels
    from compiler.ops import OPS
    ctx = kernels.Ctx(OPS["positional_encoding"].attrs(max_len=4))
    with pytest.raises(ValueError, match="max_len"):             # a symbolic T is checked at run time
        kernels.KERNELS["positional_encoding"](ctx, rand(1, 5, 6))


@pytest.mark.parametrize("d", [6, 7])
def test_pe_matches_formula(d):
    x = rand(2, 9, d)
    (y,), _, _ = run("positional_encoding", {}, [x])
    ref = np.zeros((9, d))
    for pos in range(9):
        for col in range(d):
            i2 = col - col % 2                               # 2i
            angle = pos / 10000 ** (i2 / d)
            ref[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    np.testing.assert_allclose(y - x, np.broadcast_to(ref, x.shape), rtol=1e-12, atol=1e-12)


def test_pe_float32_and_gradcheck():
    (y,), _, _ = run("positional_encoding", {}, [rand(2, 3, 4).astype(np.float32)])
    assert y.dtype == np.float32
    gradcheck("positional_encoding", {}, [rand(2, 3, 5)])


@pytest.mark.parametrize("d", [6, 7])
def test_pe_onnx(d):
    onnx_parity("positional_encoding", {}, [rand(2, 9, d)])


def test_pe_onnx_symbolic_length():
    model = onnx_symbolic("positional_encoding", {"max_len": 50}, [rand(2, 9, 6)], [("N", "T", 6)])
    assert any(n.op_type == "Slice" for n in model.graph.node)


@pytest.mark.parametrize("opset", [17, 21])
def test_attention_onnx_opset_range(opset):
    onnx_parity("scaled_dot_product_attention", {"causal": True},
                [rand(2, 3, 4), rand(2, 5, 4), rand(2, 5, 3), bmask(2, 5)], opset=opset)
    onnx_parity("multi_head_attention", {"num_heads": 2}, _mha_inputs((2, 3, 4), (2, 5, 4), None, (2, 5)),
                opset=opset)
    onnx_symbolic("positional_encoding", {}, [rand(2, 5, 6)], [("N", "T", 6)], opset=opset)
