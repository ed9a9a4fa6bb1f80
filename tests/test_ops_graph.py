import math

import numpy as np
import pytest

from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run


def graph(*shape, p=0.35, weighted=False, ring=True, seed=0):
    """A random dense adjacency; `ring` gives every node a neighbour (no zero-degree rows)."""
    r = np.random.default_rng(seed)
    a = (r.random(shape) < p).astype(float)
    v = shape[-1]
    if ring:
        a[..., np.arange(v), (np.arange(v) + 1) % v] = 1
    return a * r.uniform(0.5, 1.5, shape) if weighted else a


# --- independent references: plain loops over nodes and neighbours -------------------------------

def per_graph(fn, x, adj, *args):
    """Run a single-graph reference over a batch (x and adj each [V, .] or [N, V, .])."""
    if x.ndim == 2 and adj.ndim == 2:
        return fn(x, adj, *args)
    n = x.shape[0] if x.ndim == 3 else adj.shape[0]
    return np.stack([fn(x[b] if x.ndim == 3 else x, adj[b] if adj.ndim == 3 else adj, *args) for b in range(n)])


def gcn_ref(x, a, w, b, loops, norm):
    v = a.shape[0]
    ah = [[a[i][j] + (1.0 if loops and i == j else 0.0) for j in range(v)] for i in range(v)]
    deg = [sum(row) for row in ah]
    out = np.zeros((v, w.shape[0]))
    for i in range(v):
        for j in range(v):
            if ah[i][j] == 0:
                continue
            c = ah[i][j]
            if norm:
                c = c / math.sqrt(deg[i] * deg[j]) if deg[i] > 0 and deg[j] > 0 else 0.0
            out[i] += c * (w @ x[j])
    return out + (b if b is not None else 0)


def gat_ref(x, a, w, att_src, att_dst, b, heads, c, concat, slope, loops):
    v = a.shape[0]
    hx = [(w @ x[j]).reshape(heads, c) for j in range(v)]
    out = np.zeros((v, heads, c))
    for i in range(v):
        nbrs = [j for j in range(v) if a[i][j] != 0 or (loops and i == j)]
        for h in range(heads):
            if not nbrs:
                continue
            e = []
            for j in nbrs:
                z = att_dst[0, h] @ hx[i][h] + att_src[0, h] @ hx[j][h]
                e.append(z if z > 0 else slope * z)
            e = np.exp(np.array(e) - max(e))
            alpha = e / e.sum()
            for al, j in zip(alpha, nbrs):
                out[i, h] += al * hx[j][h]
    y = out.reshape(v, heads * c) if concat else out.mean(axis=1)
    return y + (b if b is not None else 0)


def aggregate_ref(x, a, reduce):
    v, f = x.shape
    out = np.zeros((v, f))
    for i in range(v):
        msgs = [a[i][j] * x[j] for j in range(v) if a[i][j] != 0]
        if not msgs:
            continue
        if reduce == "sum":
            out[i] = np.sum(msgs, axis=0)
        elif reduce == "mean":
            out[i] = np.mean(msgs, axis=0)
        else:
            out[i] = np.max(msgs, axis=0)
    return out


# --- a symbolic-shape ONNX check (opcheck's onnx_parity only uses concrete shapes) ---------------

def onnx_symbolic(name, attrs, arrays, types, opset=18, rtol=1e-4, atol=1e-5):
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from compiler.ir import Node
    from compiler.onnx import LOWERINGS, Builder
    from compiler.onnx.registry import DTYPES
    from compiler.ops import OPS

    opdef = OPS[name]
    a = opdef.attrs.model_validate(attrs)
    arrays = [v if v.dtype == bool else v.astype(np.float32) for v in arrays]
    types = [TensorType(tuple(t), "bool" if v.dtype == bool else "float32") for t, v in zip(types, arrays)]
    inf = opdef.infer(a, types)
    params = make_params(name, attrs, arrays, dtype=np.float32)
    (want,), _, _ = run(name, attrs, arrays, params)
    b = Builder(opset)
    x, graph_inputs, feeds = [], [], {}
    for i, (v, t) in enumerate(zip(arrays, types)):
        nm = f"in{i}"
        b.reserve(nm)
        graph_inputs.append(helper.make_tensor_value_info(nm, DTYPES[t.dtype], list(t.shape)))
        feeds[nm] = v
        x.append(nm)
    p = [b.add_initializer(f"p.{s.name}", arr) for s, arr in zip(inf.params, params)]
    node = Node(name=name, op=name, attrs=a, inputs=[], outputs=dict(zip(opdef.ports, inf.outputs)),
                params=inf.params)
    b.ins, b.scope = types, name
    res = LOWERINGS[name](b, node, x, p)
    o = b.op("Identity", [res], outputs=["out"])
    outs = [helper.make_tensor_value_info(o, DTYPES[inf.outputs[0].dtype], list(inf.outputs[0].shape))]
    model = helper.make_model(helper.make_graph(b.nodes, name, graph_inputs, outs, b.initializers),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["out"], feeds)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return model


# --- shape rules --------------------------------------------------------------------------------

def test_gcn_shape_params_macs():
    opdef, _, inf = infer("gcn_conv", {"out_features": 16}, [(2708, 1433), (2708, 2708)])
    assert opdef.primary == "out_features" and opdef.inputs == ("x", "adj")
    assert inf.outputs[0].shape == (2708, 16)
    assert [(p.name, p.shape, p.init.kind) for p in inf.params] == [
        ("weight", (16, 1433), "xavier_uniform"), ("bias", (16,), "zeros")]
    assert inf.macs == 2708 * 1433 * 16 + 2708 * 2708 * 16
    _, _, inf = infer("gcn_conv", {"out_features": 8, "bias": False}, [("N", 5, 4), (5, 5)])
    assert inf.outputs[0].shape == ("N", 5, 8) and [p.name for p in inf.params] == ["weight"]
    assert inf.macs == 5 * 4 * 8 + 25 * 4
    _, _, inf = infer("gcn_conv", {"out_features": 8}, [(5, 4), ("N", 5, 5)])
    assert inf.outputs[0].shape == ("N", 5, 8)


def test_gat_shape_params_macs():
    _, _, inf = infer("gat_conv", {"out_features": 8, "heads": 4}, [("N", 10, 6), ("N", 10, 10)])
    assert inf.outputs[0].shape == ("N", 10, 32)
    assert [(p.name, p.shape) for p in inf.params] == [
        ("weight", (32, 6)), ("att_src", (1, 4, 8)), ("att_dst", (1, 4, 8)), ("bias", (32,))]
    assert inf.params[1].init.kind == "uniform"
    assert inf.params[1].init.kw["bound"] == pytest.approx(math.sqrt(6 / (4 + 8)))   # PyG's glorot
    assert inf.macs == 10 * 6 * 32 + 2 * 10 * 32 + 100 * 32
    _, _, inf = infer("gat_conv", {"out_features": 8, "heads": 4, "concat": False}, [(10, 6), (10, 10)])
    assert inf.outputs[0].shape == (10, 8) and inf.params[3].shape == (8,)


def test_graph_aggregate_shape():
    opdef, _, inf = infer("graph_aggregate", {"reduce": "max"}, [("N", 7, 3), ("N", 7, 7)])
    assert opdef.primary == "reduce" and inf.outputs[0].shape == ("N", 7, 3) and inf.params == []
    assert inf.macs == 49 * 3
    _, a, _ = infer("graph_aggregate", {}, [(7, 3), TensorType((7, 7), "bool")])
    assert a.reduce == "sum"


@pytest.mark.parametrize("name,attrs", [("gcn_conv", {"out_features": 4}), ("gat_conv", {"out_features": 4}),
                                        ("graph_aggregate", {})])
@pytest.mark.parametrize("ins,words", [
    ([(5, 3), (5, 6)], ["square"]),
    ([(5, 3), (6, 6)], ["5 nodes", "6×6"]),
    ([(2, 5, 3), (3, 5, 5)], ["batch"]),
    ([(3,), (5, 5)], ["[V, F]"]),
    ([(5, 3), (2, 2, 5, 5)], ["adjacency"]),
])
def test_graph_shape_errors(name, attrs, ins, words):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, ins)
    for w in words:
        assert w in e.value.message


@pytest.mark.parametrize("name,attrs,attr", [("gcn_conv", {"out_features": 0}, "out_features"),
                                             ("gat_conv", {"out_features": 0}, "out_features"),
                                             ("gat_conv", {"out_features": 2, "heads": 0}, "heads")])
def test_graph_attr_errors(name, attrs, attr):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, [(5, 3), (5, 5)])
    assert e.value.attr == attr


def test_graph_aggregate_bad_reduce():
    with pytest.raises(Exception, match="reduce"):
        infer("graph_aggregate", {"reduce": "min"}, [(5, 3), (5, 5)])


# --- gcn_conv -----------------------------------------------------------------------------------

GCN_ATTRS = [{"out_features": 3}, {"out_features": 6}, {"out_features": 3, "normalize": False},
             {"out_features": 6, "add_self_loops": False}, {"out_features": 3, "bias": False,
                                                            "add_self_loops": False, "normalize": False}]
SHAPES = [((5, 4), (5, 5)), ((2, 5, 4), (2, 5, 5)), ((2, 5, 4), (5, 5)), ((5, 4), (2, 5, 5))]


@pytest.mark.parametrize("attrs", GCN_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES)
def test_gcn_matches_loop_reference(attrs, xs, As):
    x, adj = rand(*xs), graph(*As, weighted=True, ring=False, seed=len(xs) + len(As))
    params = make_params("gcn_conv", attrs, [x, adj], seed=1)
    (y,), _, _ = run("gcn_conv", attrs, [x, adj], params)
    ref = per_graph(gcn_ref, x, adj, params[0], params[1] if len(params) > 1 else None,
                    attrs.get("add_self_loops", True), attrs.get("normalize", True))
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attrs", GCN_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES[1:])
def test_gcn_gradcheck(attrs, xs, As):
    # ring=True: no zero-degree row, where deg^-1/2 jumps from 0 (an isolated node) to large values
    gradcheck("gcn_conv", attrs, [rand(*xs), graph(*As, weighted=True)])


def test_gcn_zero_degree_rows_are_finite():
    adj = graph(4, 4, ring=False, p=0.0)
    adj[0, 1] = adj[1, 0] = 1                                # nodes 2, 3 isolated
    x = rand(4, 3)
    params = make_params("gcn_conv", {"out_features": 2, "add_self_loops": False}, [x, adj])
    params[1] = rand(2)
    (y,), bwd, _ = run("gcn_conv", {"out_features": 2, "add_self_loops": False}, [x, adj], params)
    assert np.all(np.isfinite(y)) and np.allclose(y[2:], params[1])
    assert all(np.all(np.isfinite(g)) for g in bwd(rand(4, 2)) if g is not None)


def test_gcn_bool_adjacency_and_float32():
    x, adj = rand(6, 4).astype(np.float32), graph(6, 6) > 0
    params = make_params("gcn_conv", {"out_features": 3}, [x, adj], dtype=np.float32)
    (y,), _, _ = run("gcn_conv", {"out_features": 3}, [x, adj], params)
    (yf,), _, _ = run("gcn_conv", {"out_features": 3}, [x, adj.astype(np.float32)], params)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yf)


@pytest.mark.parametrize("attrs", GCN_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES)
def test_gcn_onnx(attrs, xs, As):
    onnx_parity("gcn_conv", attrs, [rand(*xs), graph(*As, weighted=True, ring=False)])


def test_gcn_onnx_bool_adjacency_opset17():
    onnx_parity("gcn_conv", {"out_features": 3}, [rand(5, 4), graph(5, 5) > 0], opset=17)


# --- gat_conv -----------------------------------------------------------------------------------

GAT_ATTRS = [{"out_features": 3}, {"out_features": 2, "heads": 3},
             {"out_features": 2, "heads": 3, "concat": False, "negative_slope": 0.1},
             {"out_features": 3, "heads": 2, "add_self_loops": False, "bias": False}]


def _gat_params(attrs, x, adj):
    params = make_params("gat_conv", attrs, [x, adj], seed=2)
    if attrs.get("bias", True):
        params[3] = rand(*params[3].shape)                   # nonzero bias, to see it added
    return params


@pytest.fixture(params=["dense", "edges"])
def gat_path(request, monkeypatch):
    """Run gat_conv's kernel on its dense [.., H, V, V] path or on its edge-list path."""
    import runtime.kernels.graph as kg
    monkeypatch.setattr(kg, "GAT_EDGE_DENSITY", -1.0 if request.param == "dense" else 1.0)
    return request.param


@pytest.mark.parametrize("attrs", GAT_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES)
def test_gat_matches_loop_reference(attrs, xs, As, gat_path):
    x, adj = rand(*xs), graph(*As, ring=False, seed=3)
    params = _gat_params(attrs, x, adj)
    (y,), _, _ = run("gat_conv", attrs, [x, adj], params)
    b = params[3] if len(params) > 3 else None
    ref = per_graph(gat_ref, x, adj, params[0], params[1], params[2], b, attrs.get("heads", 1),
                    attrs["out_features"], attrs.get("concat", True), attrs.get("negative_slope", 0.2),
                    attrs.get("add_self_loops", True))
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attrs", GAT_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES[1:])
def test_gat_gradcheck(attrs, xs, As, gat_path):
    # adj only selects neighbours (adj != 0): it gets no gradient, so it is skipped
    gradcheck("gat_conv", attrs, [rand(*xs), graph(*As, ring=False, seed=5)], skip=(1,))


def test_gat_isolated_node_gets_bias_only(gat_path):
    adj = np.zeros((4, 4))
    adj[0, 1] = adj[1, 0] = 1
    x = rand(4, 3)
    attrs = {"out_features": 2, "heads": 2, "add_self_loops": False}
    params = _gat_params(attrs, x, adj)
    (y,), bwd, _ = run("gat_conv", attrs, [x, adj], params)
    assert np.all(np.isfinite(y)) and np.allclose(y[2:], params[3])
    assert all(np.all(np.isfinite(g)) for g in bwd(rand(4, 4)) if g is not None)


def test_gat_no_edges_at_all(gat_path):
    x = rand(2, 4, 3)
    attrs = {"out_features": 2, "heads": 2, "add_self_loops": False}
    params = _gat_params(attrs, x, np.zeros((4, 4)))
    (y,), bwd, _ = run("gat_conv", attrs, [x, np.zeros((4, 4))], params)
    assert np.allclose(y, params[3])
    gx, _, gw, gas, gad, gb = bwd(rand(2, 4, 4))
    assert np.all(gx == 0) and np.all(gw == 0) and np.all(gas == 0) and gb.shape == (4,)


def test_gat_paths_agree_on_a_sparse_graph(monkeypatch):
    import runtime.kernels.graph as kg
    x, adj = rand(2, 30, 5), graph(2, 30, 30, p=0.05, ring=False, seed=11)
    attrs = {"out_features": 3, "heads": 2}
    params = _gat_params(attrs, x, adj)
    res = []
    for density in (-1.0, 1.0):
        monkeypatch.setattr(kg, "GAT_EDGE_DENSITY", density)
        (y,), bwd, _ = run("gat_conv", attrs, [x, adj], params)
        res.append((y, bwd(np.cos(y))))
    np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(res[0][1], res[1][1]):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attrs", GAT_ATTRS)
@pytest.mark.parametrize("xs,As", SHAPES)
def test_gat_onnx(attrs, xs, As):
    onnx_parity("gat_conv", attrs, [rand(*xs), graph(*As, ring=False, seed=3)])


@pytest.mark.parametrize("xs,As,types", [
    ((6, 4), (6, 6), [("V", 4), ("V", "V")]),
    ((2, 6, 4), (2, 6, 6), [("N", "V", 4), ("N", "V", "V")]),
])
def test_gat_onnx_symbolic_nodes(xs, As, types):
    model = onnx_symbolic("gat_conv", {"out_features": 2, "heads": 2}, [rand(*xs), graph(*As, ring=False)], types,
                          opset=17)
    assert any(n.op_type == "Range" for n in model.graph.node)


# --- graph_aggregate ----------------------------------------------------------------------------

@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("xs,As", SHAPES)
def test_aggregate_matches_loop_reference(reduce, xs, As):
    x, adj = rand(*xs), graph(*As, weighted=True, ring=False, seed=7)
    if adj.ndim == 2:
        adj[3] = 0                                           # an isolated node
    (y,), _, _ = run("graph_aggregate", {"reduce": reduce}, [x, adj])
    np.testing.assert_allclose(y, per_graph(aggregate_ref, x, adj, reduce), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("xs,As", SHAPES)
def test_aggregate_gradcheck(reduce, xs, As):
    x, adj = rand(*xs), graph(*As, weighted=True, ring=False, seed=8)
    # sum = A @ X is smooth in every entry of A; mean and max are not at A's zero entries
    # (they count neighbours), so their adjacency gradient is checked on non-zero entries below
    gradcheck("graph_aggregate", {"reduce": reduce}, [x, adj], skip=() if reduce == "sum" else (1,))


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_aggregate_adjacency_gradient_on_edges(reduce):
    x, adj = rand(2, 5, 3), graph(2, 5, 5, weighted=True, ring=False, seed=9)
    (y,), bwd, _ = run("graph_aggregate", {"reduce": reduce}, [x, adj])
    g = rand(*y.shape)
    ga = bwd(g)[1]
    eps = 1e-6
    for idx in zip(*np.nonzero(adj)):
        up, dn = adj.copy(), adj.copy()
        up[idx] += eps
        dn[idx] -= eps
        num = (np.sum(g * run("graph_aggregate", {"reduce": reduce}, [x, up])[0][0]) -
               np.sum(g * run("graph_aggregate", {"reduce": reduce}, [x, dn])[0][0])) / (2 * eps)
        assert abs(num - ga[idx]) < 1e-6
    assert np.all(ga[adj == 0] == 0)


def test_aggregate_max_ties_share_gradient_and_empty_graph():
    x = np.array([[1.0, 2.0], [1.0, 0.0], [0.0, 5.0]])
    adj = np.array([[0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=float)
    (y,), bwd, _ = run("graph_aggregate", {"reduce": "max"}, [x, adj])
    np.testing.assert_allclose(y, [[1, 5], [0, 0], [1, 2]])
    gx, _ = bwd(np.ones((3, 2)))
    np.testing.assert_allclose(gx, [[0.5, 1], [1 + 0.5, 0], [0, 1]])   # node 2, feature 0: x0 and x1 tie
    (y,), bwd, _ = run("graph_aggregate", {"reduce": "max"}, [x, np.zeros((3, 3))])
    assert np.all(y == 0) and np.all(bwd(np.ones((3, 2)))[0] == 0)


def test_aggregate_bool_adjacency_float32():
    x, adj = rand(2, 5, 3).astype(np.float32), graph(2, 5, 5, ring=False, seed=4) > 0
    for reduce in ("sum", "mean", "max"):
        (y,), _, _ = run("graph_aggregate", {"reduce": reduce}, [x, adj])
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, per_graph(aggregate_ref, x.astype(float), adj.astype(float), reduce),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("xs,As", SHAPES)
def test_aggregate_onnx(reduce, xs, As, opset):
    adj = graph(*As, weighted=True, ring=False, seed=7)
    if adj.ndim == 2:
        adj[3] = 0
    onnx_parity("graph_aggregate", {"reduce": reduce}, [rand(*xs), adj], opset=opset)


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_aggregate_onnx_bool_adjacency(reduce):
    onnx_parity("graph_aggregate", {"reduce": reduce}, [rand(2, 5, 3), graph(2, 5, 5, ring=False) > 0])


@pytest.mark.parametrize("opset", [17, 21])
def test_graph_onnx_opset_range(opset):
    onnx_parity("gcn_conv", {"out_features": 3}, [rand(2, 5, 4), graph(5, 5) > 0], opset=opset)
    onnx_parity("gat_conv", {"out_features": 3, "heads": 2, "concat": False}, [rand(2, 5, 4), graph(5, 5, ring=False)],
                opset=opset)
    onnx_parity("graph_aggregate", {"reduce": "max"}, [rand(2, 5, 3), graph(2, 5, 5, weighted=True, ring=False)],
                opset=opset)


def torch_ref():
    """tools/torch_ref.py, the PyTorch interpreter of the IR that uses none of specc's kernels."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    import tools.torch_ref as ref
    return ref


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("xs,As,kind", [((5, 3), (5, 5), "weighted"), ((2, 5, 3), (2, 5, 5), "weighted"),
                                         ((2, 5, 3), (5, 5), "weighted"), ((5, 3), (2, 5, 5), "0/1"),
                                         ((2, 5, 3), (2, 5, 5), "bool")])
def test_aggregate_matches_torch_ref_forward_and_gradients(reduce, xs, As, kind):
    """Kernel forward and backward against tools/torch_ref.py's graph_aggregate under torch autograd
    (float64), with an isolated node (a zero adjacency row) and batched/shared adjacencies. The adjacency
    gradient is compared on every entry for sum (A @ X is smooth in A); for mean and max only on the edges:
    off the edges neither is differentiable (the neighbour count / the set maxed over jumps), and the
    kernel gives 0 there where torch_ref's formula holds the count fixed."""
    torch = pytest.importorskip("torch")
    ref = torch_ref()
    r = np.random.default_rng(21)
    x = r.uniform(-1, 1, xs)
    adj = graph(*As, weighted=kind == "weighted", ring=False, seed=12)
    adj[..., 3, :] = 0                                              # node 3 has no neighbours
    adj[..., 0, 1:3] = 1.0 if kind != "weighted" else 0.7           # and node 0 has some
    if kind == "bool":
        adj = adj != 0
    _, a, inf = infer("graph_aggregate", {"reduce": reduce}, [x, adj])
    (y,), bwd, _ = run("graph_aggregate", {"reduce": reduce}, [x, adj])
    gy = r.standard_normal(y.shape)
    gx, ga = bwd(gy)

    tx = torch.tensor(x, requires_grad=True)
    ta = torch.tensor(adj, requires_grad=adj.dtype.kind == "f")
    c = ref.C(a=a, node=None, training=False, symbols={}, wanted=(True,), fdtype=torch.float64,
              in_types=[TensorType(xs), TensorType(As, "bool" if kind == "bool" else "float32")])
    ty = ref.OPS["graph_aggregate"](c, tx, ta)
    ty.backward(torch.tensor(gy))

    assert y.shape == tuple(ty.shape) == inf.outputs[0].shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert np.all(y[..., 3, :] == 0) and np.all(y[..., 0, :] != 0)  # the isolated node gets zeros
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    if kind == "bool":
        return
    assert np.shape(ga) == adj.shape
    want = ta.grad.numpy()
    on = adj != 0 if reduce != "sum" else np.ones(adj.shape, bool)
    np.testing.assert_allclose(np.asarray(ga)[on], want[on], rtol=1e-12, atol=1e-12)
    assert reduce == "sum" or np.all(np.asarray(ga)[~on] == 0)
