import numpy as np
import pydantic
import pytest

from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run

KINDS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def tokens(*shape, high=10, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape).astype(np.int64)


# -- embedding ---------------------------------------------------------------------------------------------

def test_embedding_shape_params_macs():
    _, _, inf = infer("embedding", {"num_embeddings": 10, "embedding_dim": 4},
                      [TensorType(("N", 7), "int64")])
    assert inf.outputs[0].shape == ("N", 7, 4) and inf.outputs[0].dtype == "float32"
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (10, 4))]
    assert inf.macs == 0


def test_embedding_any_index_shape():
    _, _, inf = infer("embedding", {"num_embeddings": 5, "embedding_dim": 3}, [TensorType((2, 3, 4), "int64")])
    assert inf.outputs[0].shape == (2, 3, 4, 3)


def test_embedding_rejects_float_input():
    with pytest.raises(ShapeError) as e:
        infer("embedding", {"num_embeddings": 10, "embedding_dim": 4}, [("N", 7)])
    assert "int64" in e.value.message and "float32" in e.value.message


def test_embedding_padding_idx_out_of_range_names_attr():
    with pytest.raises(ShapeError) as e:
        infer("embedding", {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 10},
              [TensorType(("N", 7), "int64")])
    assert e.value.attr == "padding_idx" and "10" in e.value.message


@pytest.mark.parametrize("pad,row", [(2, 2), (-1, 9)])
def test_embedding_init_zeroes_padding_row(pad, row):
    (w,) = make_params("embedding", {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": pad},
                       [tokens(3, 5)])
    assert np.all(w[row] == 0) and np.count_nonzero(np.all(w == 0, axis=1)) == 1
    assert 0.5 < w.std() < 1.5                         # N(0, 1)


@pytest.mark.parametrize("shape", [(6,), (3, 5), (2, 3, 4)])
def test_embedding_gradcheck(shape):
    gradcheck("embedding", {"num_embeddings": 7, "embedding_dim": 3}, [tokens(*shape, high=7)])


def test_embedding_padding_row_gets_no_gradient():
    attrs = {"num_embeddings": 6, "embedding_dim": 3, "padding_idx": 1}
    x = np.array([[1, 2, 1], [3, 1, 2]])
    (y,), bwd, _ = run("embedding", attrs, [x])
    gy = rand(*y.shape)
    _, gw = bwd(gy)
    assert np.all(gw[1] == 0)
    want = np.zeros_like(gw)
    np.add.at(want, x.reshape(-1), gy.reshape(-1, 3))
    want[1] = 0
    np.testing.assert_allclose(gw, want, rtol=1e-12)


def test_embedding_out_of_range_index():
    with pytest.raises(IndexError, match="out of range"):
        run("embedding", {"num_embeddings": 5, "embedding_dim": 2}, [np.array([0, 5])])


def test_scatter_rows_matches_add_at():
    from runtime.kernels.sequence import scatter_rows
    r = np.random.default_rng(3)
    idx = np.concatenate([r.integers(0, 50, 300), np.zeros(100, np.int64), np.full(40, 7)])
    r.shuffle(idx)
    rows = r.standard_normal((idx.size, 5)).astype(np.float32)
    want = np.zeros((60, 5), np.float32)
    np.add.at(want, idx, rows)
    np.testing.assert_allclose(scatter_rows(idx, rows, 60), want, rtol=1e-5, atol=1e-5)
    want[7] = 0
    got = scatter_rows(idx, rows, 60, skip=7)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(4,), (2, 3)])
def test_embedding_onnx(shape):
    onnx_parity("embedding", {"num_embeddings": 9, "embedding_dim": 4}, [tokens(*shape, high=9)])


def test_embedding_torch():
    torch = pytest.importorskip("torch")
    attrs = {"num_embeddings": 8, "embedding_dim": 3, "padding_idx": 0}
    x = tokens(4, 6, high=8, seed=5)
    (w,) = make_params("embedding", attrs, [x], dtype=np.float32)
    (y,), bwd, _ = run("embedding", attrs, [x], [w])
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.embedding(torch.tensor(x), tw, padding_idx=0)
    gy = rand(*y.shape).astype(np.float32)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(bwd(gy)[1], tw.grad.numpy(), rtol=1e-5, atol=1e-6)


# -- recurrent layers: shape rules ----------------------------------------------------------------------------

def torch_names(L, bi, bias=True):
    names = []
    for k in range(L):
        for s in ("", "_reverse")[: 2 if bi else 1]:
            names += [f"weight_ih_l{k}{s}", f"weight_hh_l{k}{s}"] + ([f"bias_ih_l{k}{s}", f"bias_hh_l{k}{s}"]
                                                                     if bias else [])
    return names


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,bi", [(1, False), (2, True)])
def test_recurrent_shapes_params_macs(kind, L, bi):
    H, I, D, G = 8, 5, 2 if bi else 1, GATES[kind] * 8
    opdef, _, inf = infer(kind, {"hidden_size": H, "num_layers": L, "bidirectional": bi}, [("N", 7, I)])
    assert opdef.ports == (("out", "h", "c") if kind == "lstm" else ("out", "h"))
    assert inf.outputs[0].shape == ("N", 7, D * H)
    assert all(o.shape == (L * D, "N", H) for o in inf.outputs[1:])
    assert [p.name for p in inf.params] == torch_names(L, bi)
    shapes = {p.name: p.shape for p in inf.params}
    assert shapes["weight_ih_l0"] == (G, I) and shapes["weight_hh_l0"] == (G, H) and shapes["bias_ih_l0"] == (G,)
    if L == 2:
        assert shapes["weight_ih_l1_reverse"] == (G, D * H)
    assert all(p.init.kind == "uniform" and p.init.kw["bound"] == pytest.approx(H ** -0.5) for p in inf.params)
    macs = sum(G * ((I if k == 0 else D * H) + H) for k in range(L)) * D * 7
    assert inf.macs == macs


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_sequence_first_and_no_bias(kind):
    _, _, inf = infer(kind, {"hidden_size": 4, "batch_first": False, "bias": False}, [("T", "N", 3)])
    assert inf.outputs[0].shape == ("T", "N", 4) and inf.outputs[1].shape == (1, "N", 4)
    assert [p.name for p in inf.params] == ["weight_ih_l0", "weight_hh_l0"]
    assert inf.macs == GATES[kind] * 4 * (3 + 4)        # symbolic T counts as one step


def test_recurrent_rejects_rank2_input():
    with pytest.raises(ShapeError) as e:
        infer("lstm", {"hidden_size": 4}, [(7, 3)])
    assert "rank-3" in e.value.message and "7×3" in e.value.message and "unsqueeze" in e.value.hint


def test_recurrent_input_size_mismatch_names_attr():
    with pytest.raises(ShapeError) as e:
        infer("gru", {"hidden_size": 4, "input_size": 6}, [("N", 7, 3)])
    assert e.value.attr == "input_size" and "6" in e.value.message and "3" in e.value.message


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recurrent_state_dtype_checked(kind):
    """An int64 h0 was accepted, then the ONNX checker refused the graph (found by tools/fuzz.py)."""
    with pytest.raises(ShapeError, match="floating-point h0"):
        infer(kind, {"hidden_size": 4}, [TensorType(("N", 7, 3)), TensorType((1, "N", 4), "int64")])


def test_recurrent_h0_shape_checked():
    with pytest.raises(ShapeError) as e:
        infer("lstm", {"hidden_size": 4, "bidirectional": True}, [("N", 7, 3), (1, "N", 4)])
    assert "h0" in e.value.message and "2×N×4" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("rnn", {"hidden_size": 4}, [(2, 7, 3), (1, 5, 4)])
    assert "1×2×4" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("lstm", {"hidden_size": 4}, [("N", 7, 3), (1, "N", 4), (1, "N", 5)])
    assert "c0" in e.value.message


@pytest.mark.parametrize("attrs,attr", [({"hidden_size": 0}, "hidden_size"),
                                        ({"hidden_size": 4, "num_layers": 0}, "num_layers"),
                                        ({"hidden_size": 4, "dropout": 1.0}, "dropout")])
def test_recurrent_bad_attrs(attrs, attr):
    with pytest.raises(ShapeError) as e:
        infer("rnn", attrs, [("N", 7, 3)])
    assert e.value.attr == attr


def test_recurrent_attribute_models():
    with pytest.raises(pydantic.ValidationError):
        infer("lstm", {"hidden_size": 4, "nonlinearity": "relu"}, [("N", 7, 3)])
    with pytest.raises(pydantic.ValidationError):
        infer("rnn", {"hidden_size": 4, "nonlinearity": "sigmoid"}, [("N", 7, 3)])


def test_recurrent_symbolic_feature_size_is_an_error():
    with pytest.raises(ShapeError, match="concrete"):
        infer("gru", {"hidden_size": 4}, [("N", 7, "F")])


# -- recurrent layers: kernels --------------------------------------------------------------------------------

def rec_inputs(kind, L, bi, bf, init, N=2, T=3, I=3, H=4, seed=0):
    r = np.random.default_rng(seed)
    D = 2 if bi else 1
    x = r.uniform(-1, 1, (N, T, I) if bf else (T, N, I))
    h0 = r.uniform(-1, 1, (L * D, N, H)) if init else None
    if kind == "lstm":
        return [x, h0, r.uniform(-1, 1, (L * D, N, H)) if init else None]
    return [x, h0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,bi,bf,init", [(1, False, True, True), (1, True, False, False),
                                           (2, False, False, True), (2, True, True, True)])
def test_recurrent_gradcheck(kind, L, bi, bf, init):
    attrs = {"hidden_size": 4, "num_layers": L, "bidirectional": bi, "batch_first": bf}
    gradcheck(kind, attrs, rec_inputs(kind, L, bi, bf, init), max_points=8)


@pytest.mark.parametrize("kind,extra", [("rnn", {"nonlinearity": "relu"}), ("lstm", {"bias": False}),
                                        ("gru", {"bias": False})])
def test_recurrent_gradcheck_variants(kind, extra):
    attrs = {"hidden_size": 3, "num_layers": 2, "bidirectional": True, **extra}
    gradcheck(kind, attrs, rec_inputs(kind, 2, True, True, True, H=3), max_points=8)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_dropout_between_layers(kind):
    attrs = {"hidden_size": 4, "num_layers": 2, "dropout": 0.5}
    ins = rec_inputs(kind, 2, False, True, False, N=3, T=4)
    params = make_params(kind, attrs, ins)
    ev, _, _ = run(kind, attrs, ins, params)
    plain, _, _ = run(kind, {**attrs, "dropout": 0.0}, ins, params, training=True)
    tr1, _, _ = run(kind, attrs, ins, params, training=True, seed=1)
    tr2, _, _ = run(kind, attrs, ins, params, training=True, seed=2)
    np.testing.assert_allclose(ev[0], plain[0], rtol=1e-12)       # eval ignores dropout
    assert not np.allclose(tr1[0], ev[0]) and not np.allclose(tr1[0], tr2[0])
    np.testing.assert_allclose(tr1[1][0], ev[1][0], rtol=1e-12)   # layer 0 is before any dropout
    gradcheck(kind, attrs, ins, params, training=True, max_points=6)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_backward_with_missing_port_gradients(kind):
    """Any subset of the ports' gradients may be None; the result equals zeros in their place."""
    attrs = {"hidden_size": 4, "num_layers": 2, "bidirectional": True}
    ins = rec_inputs(kind, 2, True, True, True)
    outs, bwd, _ = run(kind, attrs, ins)
    r = np.random.default_rng(2)
    cots = [r.standard_normal(o.shape) for o in outs]
    for drop in range(len(outs)):
        partial = tuple(None if i == drop else c for i, c in enumerate(cots))
        zeros = tuple(np.zeros_like(c) if i == drop else c for i, c in enumerate(cots))
        _, bwd, _ = run(kind, attrs, ins)
        got = bwd(partial)
        _, bwd, _ = run(kind, attrs, ins)
        want = bwd(zeros)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_recurrent_skips_unwanted_out_and_unneeded_grads():
    attrs = {"hidden_size": 4}
    ins = rec_inputs("lstm", 1, False, True, True)
    params = make_params("lstm", attrs, ins)
    (out, h, c), bwd, _ = run("lstm", attrs, ins, params, wanted=(False, True, True),
                              needs=(True, False, False, False, True, False, False))
    full, _, _ = run("lstm", attrs, ins, params)
    assert out is None
    np.testing.assert_allclose(h, full[1], rtol=1e-12)
    g = bwd((None, np.ones_like(h), None))
    assert g[0] is not None and g[4] is not None and g[1] is None and g[3] is None and g[5] is None


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_keeps_float32(kind):
    attrs = {"hidden_size": 4, "bidirectional": True, "num_layers": 2}
    ins = [None if v is None else v.astype(np.float32) for v in rec_inputs(kind, 2, True, True, True)]
    params = make_params(kind, attrs, ins, dtype=np.float32)
    outs, bwd, _ = run(kind, attrs, ins, params)
    assert all(o.dtype == np.float32 for o in outs)
    grads = bwd(tuple(np.ones_like(o) for o in outs))
    assert all(g.dtype == np.float32 for g in grads if g is not None)


# -- recurrent layers: PyTorch parity (forward and every gradient) -------------------------------------------

TORCH_GRID = [(L, bi, bf, init) for L in (1, 2) for bi in (False, True) for bf in (True, False)
              for init in (False, True)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,bi,bf,init", TORCH_GRID)
def test_recurrent_torch(kind, L, bi, bf, init):
    torch = pytest.importorskip("torch")
    H, I = 5, 3
    extra = {"nonlinearity": "relu"} if kind == "rnn" and L == 2 else {}
    attrs = {"hidden_size": H, "num_layers": L, "bidirectional": bi, "batch_first": bf, **extra}
    ins = rec_inputs(kind, L, bi, bf, init, N=3, T=4, I=I, H=H, seed=L + 2 * bi + 4 * bf)
    params = make_params(kind, attrs, ins, seed=11)
    outs, bwd, _ = run(kind, attrs, ins, params)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    mod = cls(I, H, num_layers=L, bidirectional=bi, batch_first=bf, **extra).double()
    assert [n for n, _ in mod.named_parameters()] == torch_names(L, bi)
    with torch.no_grad():
        for tp, v in zip(mod.parameters(), params):
            tp.copy_(torch.tensor(v))
    t_ins = [None if v is None else torch.tensor(v, requires_grad=True) for v in ins]
    if kind == "lstm":
        res = mod(t_ins[0], None if not init else (t_ins[1], t_ins[2]))
        touts = [res[0], *res[1]]
    else:
        touts = list(mod(t_ins[0], t_ins[1]))
    r = np.random.default_rng(4)
    cots = [r.standard_normal(tuple(t.shape)) for t in touts]
    sum((t * torch.tensor(c)).sum() for t, c in zip(touts, cots)).backward()
    grads = bwd(tuple(cots))
    for o, t in zip(outs, touts):
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    want = [None if v is None else v.grad.numpy() for v in t_ins] + [p.grad.numpy() for p in mod.parameters()]
    for i, (g, w) in enumerate(zip(grads, want)):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11, err_msg=f"{kind} gradient {i}")


# -- recurrent layers: ONNX parity ----------------------------------------------------------------------------

ONNX_GRID = [(L, bi, bf, init) for L in (1, 2) for bi in (False, True) for bf in (True, False)
             for init in (False, True)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L,bi,bf,init", ONNX_GRID)
def test_recurrent_onnx(kind, L, bi, bf, init):
    attrs = {"hidden_size": 5, "num_layers": L, "bidirectional": bi, "batch_first": bf}
    onnx_parity(kind, attrs, rec_inputs(kind, L, bi, bf, init, N=3, T=4, I=6, H=5))


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("kind,extra", [("rnn", {"nonlinearity": "relu"}), ("lstm", {"bias": False}),
                                        ("gru", {"bias": False}), ("lstm", {"dropout": 0.3})])
def test_recurrent_onnx_variants(kind, extra, opset):
    attrs = {"hidden_size": 4, "num_layers": 2, "bidirectional": True, **extra}
    onnx_parity(kind, attrs, rec_inputs(kind, 2, True, True, True, N=2, T=5, I=3, H=4), opset=opset)


def test_lstm_onnx_initial_h_only():
    attrs = {"hidden_size": 4, "num_layers": 2}
    x, h0, _ = rec_inputs("lstm", 2, False, True, True)
    onnx_parity("lstm", attrs, [x, h0, None])


def test_recurrent_onnx_uses_native_ops():
    from compiler.ir import Node
    from compiler.onnx import LOWERINGS, Builder
    for kind, native in (("rnn", "RNN"), ("lstm", "LSTM"), ("gru", "GRU")):
        attrs = {"hidden_size": 4, "num_layers": 3, "bidirectional": True}
        opdef, a, inf = infer(kind, attrs, [(2, 50, 3)])
        b = Builder(18)
        b.ins = [inf.outputs[0]]
        node = Node(kind, kind, a, [], dict(zip(opdef.ports, inf.outputs)), inf.params)
        LOWERINGS[kind](b, node, ["x"] + [None] * (len(opdef.inputs) - 1), [p.name for p in inf.params])
        ops = [n.op_type for n in b.nodes]
        assert ops.count(native) == 3 and "Loop" not in ops and "Scan" not in ops
        if kind == "gru":
            assert all(at.i == 1 for n in b.nodes if n.op_type == "GRU" for at in n.attribute
                       if at.name == "linear_before_reset")
