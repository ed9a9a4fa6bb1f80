"""Tensor family: shape rules, kernels (forward, gradients), ONNX lowerings and PyTorch parity."""
from types import SimpleNamespace

import numpy as np
import pydantic
import pytest

import compiler.ops as ops
import runtime.kernels as kernels
from compiler.errors import ShapeError
from compiler.ir import Node, TensorType
from opcheck import gradcheck, infer, onnx_parity, rand, run

T = TensorType


def shape_of(name, attrs, inputs):
    _, _, inf = infer(name, attrs, inputs)
    return inf.outputs[0].shape


def raises(name, attrs, inputs, attr=None, *words):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, inputs)
    assert e.value.attr == attr, (e.value.attr, e.value.message)
    for w in words:
        assert w in e.value.message, (w, e.value.message)
    return e.value


# --------------------------------------------------------------------------- harness for symbolic shapes

def _bind(types, arrays):
    symbols = {}
    for t, arr in zip(types, arrays):
        if t is None:
            continue
        for d, s in zip(t.shape, np.shape(arr)):
            if isinstance(d, str):
                symbols.setdefault(d, s)
    return symbols


def _node(name, a, inf):
    opdef = ops.OPS[name]
    return Node(name=name, op=name, attrs=a, inputs=[],
                outputs=dict(zip(inf.ports or opdef.ports, inf.outputs)), params=inf.params)


def sym_run(name, attrs, types, arrays, extra=()):
    """Run a kernel the way the runtime does: inferred on (symbolic) types, symbols bound, ctx.node set."""
    opdef = ops.OPS[name]
    a = opdef.attrs.model_validate(attrs)
    inf = opdef.infer(a, list(types))
    symbols = _bind(list(types) + [t for t, _ in extra], list(arrays) + [v for _, v in extra])
    ctx = kernels.Ctx(a, symbols=symbols, node=_node(name, a, inf),
                      needs=tuple(v is not None and np.asarray(v).dtype.kind == "f" for v in arrays))
    out, bwd = kernels.KERNELS[name](ctx, *arrays)
    return (out if len(inf.outputs) > 1 else (out,)), bwd, inf


def sym_parity(name, attrs, types, arrays, extra=(), opset=18):
    """ONNX parity with symbolic graph-input dims; `extra` graph inputs only carry symbols (e.g. N)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from compiler.onnx import LOWERINGS, Builder
    from compiler.onnx.registry import DTYPES

    arrays = [np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v) for v in arrays]
    extra = [(t, np.asarray(v, np.float32)) for t, v in extra]
    want, _, inf = sym_run(name, attrs, types, arrays, extra)
    a = ops.OPS[name].attrs.model_validate(attrs)
    b = Builder(opset)
    feeds, graph_inputs, x = {}, [], []
    for i, (t, v) in enumerate(list(zip(types, arrays)) + extra):
        nm = f"in{i}"
        b.reserve(nm)
        feeds[nm] = v
        graph_inputs.append(helper.make_tensor_value_info(nm, DTYPES[t.dtype], list(t.shape)))
        for axis, d in enumerate(t.shape):
            if isinstance(d, str):
                b.symbols.setdefault(d, (nm, axis))
        if i < len(types):
            x.append(nm)
    b.ins = list(types)
    b.scope = name
    res = LOWERINGS[name](b, _node(name, a, inf), x, [])
    res = [res] if isinstance(res, str) else list(res)
    outs = []
    for k, (value, t) in enumerate(zip(res, inf.outputs)):
        o = b.op("Identity", [value], outputs=[f"out{k}"])
        outs.append(helper.make_tensor_value_info(o, DTYPES[t.dtype], list(t.shape)))
    graph = helper.make_graph(b.nodes, name, graph_inputs, outs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run([f"out{k}" for k in range(len(res))], feeds)
    for g, w in zip(got, want):
        assert g.shape == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def torch_check(name, attrs, inputs, fn, rtol=1e-5, atol=1e-6):
    """Forward and every float input's gradient against a PyTorch function (float64)."""
    torch = pytest.importorskip("torch")
    inputs = [np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v) for v in inputs]
    outs, bwd, _ = run(name, attrs, inputs)
    tin = [torch.tensor(v, requires_grad=v.dtype.kind == "f") for v in inputs]
    ref = fn(*tin)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    r = np.random.default_rng(3)
    cots = [r.standard_normal(o.shape) for o in outs]
    assert len(outs) == len(ref)
    for o, t in zip(outs, ref):
        assert np.shape(o) == tuple(t.shape), f"{name}: shape {np.shape(o)}, torch {tuple(t.shape)}"
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=rtol, atol=atol)
    grads = bwd(cots[0] if len(outs) == 1 else tuple(cots))
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    torch.autograd.backward(list(ref), [torch.tensor(c) for c in cots])
    for i, t in enumerate(tin):
        if t.requires_grad:
            np.testing.assert_allclose(np.broadcast_to(grads[i], t.shape), t.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"{name}: gradient of input {i}")


# --------------------------------------------------------------------------- identity, detach

def test_identity_and_detach_shapes():
    for name in ("identity", "detach"):
        _, _, inf = infer(name, {}, [T(("N", 3, 4))])
        assert inf.outputs[0] == T(("N", 3, 4)) and inf.macs == 0 and not inf.params


def test_identity_gradcheck_and_onnx():
    gradcheck("identity", {}, [rand(3, 4)])
    onnx_parity("identity", {}, [rand(2, 3, 4)])


def test_identity_matches_torch():
    torch = pytest.importorskip("torch")
    torch_check("identity", {}, [rand(2, 3, 4)], torch.nn.Identity())


def test_detach_blocks_gradient():
    x = rand(3, 4)
    (y,), bwd, _ = run("detach", {}, [x])
    np.testing.assert_array_equal(y, x)
    assert bwd is None
    onnx_parity("detach", {}, [rand(2, 3)])


# --------------------------------------------------------------------------- add, sub, mul, div

ARITH = ["add", "sub", "mul", "div"]


def test_arith_shapes_macs_dtypes():
    _, _, inf = infer("add", {}, [T(("N", 1, 4)), T((3, 1))])
    assert inf.outputs[0].shape == ("N", 3, 4) and inf.macs == 12
    assert shape_of("mul", {"value": 2.0}, [T(("N", 5))]) == ("N", 5)
    assert infer("add", {}, [T((2,), "int64"), T((2,))])[2].outputs[0].dtype == "float32"
    assert infer("div", {}, [T((2,), "int64"), T((2,), "int64")])[2].outputs[0].dtype == "float32"
    assert infer("mul", {"value": 3}, [T((2,), "int64")])[2].outputs[0].dtype == "int64"
    assert infer("mul", {"value": 0.5}, [T((2,), "int64")])[2].outputs[0].dtype == "float32"


@pytest.mark.parametrize("name", ARITH)
def test_arith_errors(name):
    raises(name, {}, [T((2, 3))], "value", "neither")
    raises(name, {"value": 1.0}, [T((2, 3)), T((3,))], "value", "both")
    e = raises(name, {}, [T(("N", 3)), T((4,))], None, "N×3", "4", "broadcast")
    assert e.hint


ARITH_CASES = [((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((3, 1), (1, 5)), ((4,), None)]


@pytest.mark.parametrize("name", ARITH)
@pytest.mark.parametrize("sa,sb", ARITH_CASES)
def test_arith_gradcheck(name, sa, sb):
    attrs = {"value": 1.7} if sb is None else {}
    b = None if sb is None else (rand(*sb, low=0.5, high=1.5) if name == "div" else rand(*sb))
    gradcheck(name, attrs, [rand(*sa), b])


@pytest.mark.parametrize("name", ARITH)
@pytest.mark.parametrize("sa,sb", ARITH_CASES)
def test_arith_onnx(name, sa, sb):
    attrs = {"value": 1.7} if sb is None else {}
    b = None if sb is None else rand(*sb, low=0.5, high=1.5)
    onnx_parity(name, attrs, [rand(*sa), b])


@pytest.mark.parametrize("name", ARITH)
def test_arith_int_inputs(name):
    i = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    (y,), _, inf = run(name, {"value": 2}, [i])
    assert y.dtype == (np.float32 if name == "div" else np.int64)
    ref = {"add": i + 2, "sub": i - 2, "mul": i * 2, "div": i / 2}[name]
    np.testing.assert_allclose(y, ref)
    (y,), _, _ = run(name, {}, [i, np.float32([1.5, 2.5, 4.0])])
    assert y.dtype == np.float32
    onnx_parity(name, {"value": 2}, [i])
    onnx_parity(name, {"value": 0.5}, [i])
    onnx_parity(name, {}, [i, np.float32([1.5, 2.5, 4.0])])


@pytest.mark.parametrize("name,fn", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
                                     ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b)])
def test_arith_torch(name, fn):
    torch_check(name, {}, [rand(2, 1, 4), rand(3, 1, low=0.5, high=2.0)], fn)
    torch_check(name, {"value": -0.3}, [rand(2, 3)], lambda a: fn(a, -0.3))


def test_arith_keeps_float32():
    x = rand(2, 3).astype(np.float32)
    for name in ARITH:
        assert run(name, {"value": 1.5}, [x])[0][0].dtype == np.float32
        assert run(name, {}, [x, x + 2])[0][0].dtype == np.float32


# --------------------------------------------------------------------------- matmul

MATMUL_CASES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((4,), (2, 4, 3)),
                ((2, 3, 4), (4,))]


def test_matmul_shapes_macs():
    _, _, inf = infer("matmul", {}, [T(("N", 3, 4)), T((4, 5))])
    assert inf.outputs[0].shape == ("N", 3, 5) and inf.macs == 3 * 5 * 4
    assert shape_of("matmul", {}, [T(("N", "T", 8)), T(("N", 8, "T"))]) == ("N", "T", "T")
    assert shape_of("matmul", {}, [T((4,)), T((4,))]) == ()
    assert shape_of("matmul", {}, [T((2, 1, 3, 4)), T((5, 4, 2))]) == (2, 5, 3, 2)
    assert shape_of("matmul", {}, [T(("N", 4)), T((4,))]) == ("N",)


def test_matmul_errors():
    raises("matmul", {}, [T(("N", 3, 4)), T((5, 6))], None, "4", "5", "N×3×4", "5×6")
    raises("matmul", {}, [T((2, 3, 4)), T((3, 4, 5))], None, "batch", "2", "3")
    raises("matmul", {}, [T(()), T((3,))], None, "scalar")


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_gradcheck(sa, sb):
    gradcheck("matmul", {}, [rand(*sa), rand(*sb)])


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_onnx(sa, sb):
    onnx_parity("matmul", {}, [rand(*sa), rand(*sb)])


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_torch(sa, sb):
    torch = pytest.importorskip("torch")
    torch_check("matmul", {}, [rand(*sa), rand(*sb)], torch.matmul)


# --------------------------------------------------------------------------- concat, split

def test_concat_shapes():
    _, _, inf = infer("concat", {"dim": 1}, [T(("N", 3, 4)), T(("N", 5, 4)), T(("N", 1, 4))])
    assert inf.outputs[0].shape == ("N", 9, 4) and inf.macs == 0
    assert shape_of("concat", {"dim": -1}, [T(("N", 3)), T(("N", 2))]) == ("N", 5)
    assert shape_of("concat", {}, [T((2, 3)), T((4, 3))]) == (6, 3)
    assert shape_of("concat", {}, [T(("N", 3))]) == ("N", 3)


def test_concat_errors():
    raises("concat", {"dim": 1}, [T(("N", 3, 4)), T(("N", 5, 6))], "dim", "dimension 2", "6", "4")
    e = raises("concat", {}, [T(("N", 3)), T(("N", 3))], "dim", "'N'")   # default dim 0 = batch
    assert "dim: -1" in e.hint
    e = raises("concat", {}, [T(("N", 3)), T(("N", 2))], "dim", "dimension 1", "2 vs 3")
    assert "dim: 1" in e.hint
    raises("concat", {"dim": 1}, [T(("N", 3)), T(("N", 3, 1))], None, "rank")
    raises("concat", {"dim": 2}, [T(("N", 3)), T(("N", 3))], "dim", "out of range")


@pytest.mark.parametrize("dim,shapes", [(1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]), (-1, [(3, 2), (3, 5)]),
                                        (0, [(2, 3), (1, 3)]), (1, [(2, 3)])])
def test_concat_gradcheck_onnx(dim, shapes):
    xs = [rand(*s) for s in shapes]
    gradcheck("concat", {"dim": dim}, xs)
    onnx_parity("concat", {"dim": dim}, xs)
    torch = pytest.importorskip("torch")
    torch_check("concat", {"dim": dim}, xs, lambda *t: torch.cat(t, dim))


def test_split_shapes_and_ports():
    _, _, inf = infer("split", {"sections": 2, "dim": 1}, [T(("N", 5, 3))])
    assert [t.shape for t in inf.outputs] == [("N", 2, 3), ("N", 2, 3), ("N", 1, 3)]
    assert inf.ports == ["0", "1", "2"]
    _, _, inf = infer("split", {"sections": [1, 4], "dim": -1}, [T(("N", 5))])
    assert [t.shape for t in inf.outputs] == [("N", 1), ("N", 4)] and inf.ports == ["0", "1"]
    assert ops.OPS["split"].primary == "sections"


def test_split_errors():
    raises("split", {"sections": [2, 2], "dim": 1}, [T(("N", 5))], "sections", "[2, 2]", "4", "5")
    raises("split", {"sections": 2}, [T(("N", 4))], "dim", "'N'")
    raises("split", {"sections": 0, "dim": 1}, [T(("N", 4))], "sections", "positive")
    raises("split", {"sections": [3, 0, 1], "dim": 1}, [T(("N", 4))], "sections", "positive")
    raises("split", {"sections": 4, "dim": 1}, [T(("N", 4))], "sections", "single chunk")
    raises("split", {"sections": [4], "dim": 1}, [T(("N", 4))], "sections", "single chunk")


@pytest.mark.parametrize("attrs,shape", [({"sections": 2, "dim": 1}, (2, 5, 3)),
                                         ({"sections": [1, 3, 1], "dim": -1}, (3, 5)),
                                         ({"sections": 3, "dim": 0}, (4, 2)),
                                         ({"sections": [2, 2], "dim": 0}, (4, 2))])
def test_split_gradcheck_onnx_torch(attrs, shape):
    x = rand(*shape)
    gradcheck("split", attrs, [x])
    onnx_parity("split", attrs, [x])
    torch = pytest.importorskip("torch")
    torch_check("split", attrs, [x], lambda t: torch.split(t, attrs["sections"], attrs["dim"]))


def test_split_backward_with_unread_ports():
    x = rand(2, 5)
    outs, bwd, _ = run("split", {"sections": 2, "dim": 1}, [x])
    g = np.ones((2, 2))
    (gx,) = bwd((None, g, None))
    want = np.zeros((2, 5))
    want[:, 2:4] = 1
    np.testing.assert_array_equal(gx, want)


# --------------------------------------------------------------------------- reshape, flatten

def test_reshape_shapes():
    assert shape_of("reshape", {"shape": [-1, 16]}, [T(("N", 4, 4))]) == ("N", 16)
    assert shape_of("reshape", {"shape": ["N", -1]}, [T(("N", 4, 4))]) == ("N", 16)
    assert shape_of("reshape", {"shape": ["N", 2, 8]}, [T(("N", 4, 4))]) == ("N", 2, 8)
    assert shape_of("reshape", {"shape": [3, -1, 2]}, [T((2, 3, 4))]) == (3, 4, 2)
    assert shape_of("reshape", {"shape": ["N", "T", -1]}, [T(("N", "T", 2, 4))]) == ("N", "T", 8)
    assert shape_of("reshape", {"shape": ["T", "N", 8]}, [T(("N", "T", 8))]) == ("T", "N", 8)
    assert infer("reshape", {"shape": [-1]}, [T((2, 3))])[2].macs == 0


def test_reshape_errors():
    raises("reshape", {"shape": ["N", 20]}, [T(("N", 4, 4))], "shape", "N×4×4", "16·N", "20·N")
    raises("reshape", {"shape": [5, -1]}, [T(("N", 4, 4))], "shape", "16·N", "multiple of 5")
    raises("reshape", {"shape": [-1, 8]}, [T(("N", 4, 4))], "shape", "2·N")
    raises("reshape", {"shape": [-1, 4]}, [T(("N", "T", 4))], "shape", "N·T")
    raises("reshape", {"shape": ["T", -1]}, [T(("N", 4))], "shape", "'T'", "N×4")
    raises("reshape", {"shape": [-1, -1]}, [T(("N", 4))], "shape", "more than one -1")
    raises("reshape", {"shape": [0, 4]}, [T(("N", 4))], "shape", "0")
    raises("reshape", {"shape": ["N+1", 4]}, [T(("N", 4))], "shape", "N+1")


@pytest.mark.parametrize("shape,target", [((2, 3, 4), [6, 4]), ((2, 3, 4), [-1]), ((2, 12), [2, 3, -1])])
def test_reshape_gradcheck_onnx(shape, target):
    gradcheck("reshape", {"shape": target}, [rand(*shape)])
    onnx_parity("reshape", {"shape": target}, [rand(*shape)])


@pytest.mark.parametrize("types,arr,target", [
    ([T(("N", 4, 4))], (3, 4, 4), [-1, 16]),
    ([T(("N", 4, 4))], (3, 4, 4), ["N", -1]),
    ([T(("N", 4, 4))], (3, 4, 4), ["N", 2, 8]),
    ([T(("N", "T", 8))], (2, 3, 8), ["T", "N", 8]),         # both symbols move: b.dim
    ([T(("N", "T", 2, 4))], (2, 3, 2, 4), ["N", "T", -1]),
])
def test_reshape_symbolic_kernel_and_onnx(types, arr, target):
    x = rand(*arr)
    (y,), bwd, inf = sym_run("reshape", {"shape": target}, types, [x])
    np.testing.assert_array_equal(y, x.reshape(y.shape))
    assert y.ndim == inf.outputs[0].rank
    assert bwd(np.ones_like(y))[0].shape == x.shape
    sym_parity("reshape", {"shape": target}, types, [x])
    sym_parity("reshape", {"shape": target}, types, [rand(*((5,) + arr[1:])) if arr[0] != 2 else rand(*arr)])


def test_reshape_kernel_without_bound_symbols():
    a = ops.OPS["reshape"].attrs.model_validate({"shape": ["N", 16]})
    y, _ = kernels.KERNELS["reshape"](kernels.Ctx(a), rand(3, 4, 4))
    assert y.shape == (3, 16)
    a = ops.OPS["reshape"].attrs.model_validate({"shape": ["N", -1]})
    with pytest.raises(ValueError, match="'N'"):
        kernels.KERNELS["reshape"](kernels.Ctx(a), rand(3, 4, 4))


def test_flatten_shapes():
    _, _, inf = infer("flatten", {}, [T(("N", 3, 4, 5))])
    assert inf.outputs[0].shape == ("N", 60) and inf.macs == 0
    assert shape_of("flatten", {"start_dim": 0}, [T((2, 3, 4))]) == (24,)
    assert shape_of("flatten", {"start_dim": 2}, [T(("N", "T", 4, 5))]) == ("N", "T", 20)
    assert shape_of("flatten", {"start_dim": 1, "end_dim": 2}, [T(("N", 3, 4, 5))]) == ("N", 12, 5)
    assert shape_of("flatten", {"start_dim": 0}, [T(("N", 1))]) == ("N",)
    raises("flatten", {}, [T(("N",))], "start_dim", "out of range")     # as torch.flatten
    assert shape_of("flatten", {}, [T(())]) == (1,)


def test_flatten_errors():
    e = raises("flatten", {"start_dim": 0}, [T(("N", 3))], None, "N×3", "3·N")
    assert "start_dim: 1" in e.hint
    raises("flatten", {"start_dim": 2, "end_dim": 1}, [T(("N", 3, 4))], "start_dim", "after")
    raises("flatten", {"start_dim": 4}, [T(("N", 3, 4))], "start_dim", "out of range")


@pytest.mark.parametrize("attrs,shape", [({}, (2, 3, 4)), ({"start_dim": 0}, (2, 3, 4)),
                                         ({"start_dim": 1, "end_dim": 2}, (2, 3, 4, 5)),
                                         ({"start_dim": -2}, (2, 3, 4, 5))])
def test_flatten_gradcheck_onnx_torch(attrs, shape):
    x = rand(*shape)
    gradcheck("flatten", attrs, [x])
    onnx_parity("flatten", attrs, [x])
    torch = pytest.importorskip("torch")
    torch_check("flatten", attrs, [x], lambda t: torch.flatten(t, attrs.get("start_dim", 1),
                                                               attrs.get("end_dim", -1)))


@pytest.mark.parametrize("attrs,t,arr", [({}, T(("N", 3, 4)), (2, 3, 4)),
                                         ({"start_dim": 2}, T(("N", "T", 2, 3)), (2, 5, 2, 3)),
                                         ({"start_dim": 0, "end_dim": 1}, T((1, "T", 4)), (1, 2, 4))])
def test_flatten_symbolic_onnx(attrs, t, arr):
    sym_parity("flatten", attrs, [t], [rand(*arr)])


# --------------------------------------------------------------------------- permute, transpose

def test_permute_transpose_shapes():
    assert shape_of("permute", {"dims": [0, 2, 1]}, [T(("N", "T", 8))]) == ("N", 8, "T")
    assert shape_of("permute", {"dims": [0, -1, 1, 2]}, [T(("N", 3, 4, 5))]) == ("N", 5, 3, 4)
    assert shape_of("transpose", {"dim0": 1, "dim1": -1}, [T(("N", 3, 4))]) == ("N", 4, 3)
    assert ops.OPS["permute"].primary == "dims"


def test_permute_transpose_errors():
    raises("permute", {"dims": [0, 1]}, [T(("N", 3, 4))], "dims", "rank 3")
    raises("permute", {"dims": [0, 1, 1]}, [T(("N", 3, 4))], "dims", "permutation")
    raises("permute", {"dims": [0, 1, 3]}, [T(("N", 3, 4))], "dims", "out of range")
    raises("transpose", {"dim0": 3, "dim1": 1}, [T(("N", 3, 4))], "dim0", "out of range")
    raises("transpose", {"dim0": 0, "dim1": -4}, [T(("N", 3, 4))], "dim1", "out of range")


@pytest.mark.parametrize("dims", [[0, 2, 1], [2, 0, 1], [1, -1, 0]])
def test_permute_gradcheck_onnx_torch(dims):
    x = rand(2, 3, 4)
    gradcheck("permute", {"dims": dims}, [x])
    onnx_parity("permute", {"dims": dims}, [x])
    torch = pytest.importorskip("torch")
    torch_check("permute", {"dims": dims}, [x], lambda t: t.permute(*dims))


@pytest.mark.parametrize("d0,d1", [(0, 1), (1, -1), (2, 2)])
def test_transpose_gradcheck_onnx_torch(d0, d1):
    x = rand(2, 3, 4)
    gradcheck("transpose", {"dim0": d0, "dim1": d1}, [x])
    onnx_parity("transpose", {"dim0": d0, "dim1": d1}, [x])
    torch = pytest.importorskip("torch")
    torch_check("transpose", {"dim0": d0, "dim1": d1}, [x], lambda t: t.transpose(d0, d1))


# --------------------------------------------------------------------------- squeeze, unsqueeze

def test_squeeze_unsqueeze_shapes():
    assert shape_of("squeeze", {}, [T(("N", 1, 3, 1))]) == ("N", 3)
    assert shape_of("squeeze", {"dim": 1}, [T(("N", 1, 3, 1))]) == ("N", 3, 1)
    assert shape_of("squeeze", {"dim": [-1, 1]}, [T(("N", 1, 3, 1))]) == ("N", 3)
    assert shape_of("squeeze", {}, [T(("N", 3))]) == ("N", 3)
    assert shape_of("unsqueeze", {"dim": 1}, [T(("N", 3))]) == ("N", 1, 3)
    assert shape_of("unsqueeze", {"dim": -1}, [T(("N", 3))]) == ("N", 3, 1)
    assert shape_of("unsqueeze", {"dim": 0}, [T(())]) == (1,)


def test_squeeze_unsqueeze_errors():
    raises("squeeze", {"dim": 2}, [T(("N", 1, 3))], "dim", "dimension 2", "3", "not 1")
    raises("squeeze", {"dim": 0}, [T(("N", 1, 3))], "dim", "size N", "not 1")
    raises("squeeze", {"dim": [1, 1]}, [T(("N", 1, 3))], "dim", "twice")
    raises("unsqueeze", {"dim": 3}, [T(("N", 3))], "dim", "out of range")


@pytest.mark.parametrize("name,attrs,shape", [("squeeze", {}, (2, 1, 3, 1)), ("squeeze", {"dim": -1}, (2, 1, 3, 1)),
                                              ("squeeze", {"dim": [1, 3]}, (2, 1, 3, 1)),
                                              ("squeeze", {}, (2, 3)),
                                              ("unsqueeze", {"dim": 0}, (2, 3)),
                                              ("unsqueeze", {"dim": -1}, (2, 3)),
                                              ("unsqueeze", {"dim": 1}, (2, 3))])
def test_squeeze_unsqueeze_gradcheck_onnx(name, attrs, shape):
    gradcheck(name, attrs, [rand(*shape)])
    onnx_parity(name, attrs, [rand(*shape)])


@pytest.mark.parametrize("name,attrs,shape,fn", [
    ("squeeze", {}, (2, 1, 3, 1), lambda t: t.squeeze()),
    ("squeeze", {}, (1, 1, 3), lambda t: t.squeeze()),                # concrete sizes: every 1 goes, as torch
    ("squeeze", {}, (2, 3), lambda t: t.squeeze()),
    ("squeeze", {"dim": 1}, (2, 1, 3, 1), lambda t: t.squeeze(1)),
    ("squeeze", {"dim": -1}, (2, 1, 3, 1), lambda t: t.squeeze(-1)),
    ("squeeze", {"dim": [3, 1]}, (2, 1, 3, 1), lambda t: t.squeeze((3, 1))),
    ("unsqueeze", {"dim": 0}, (2, 3), lambda t: t.unsqueeze(0)),
    ("unsqueeze", {"dim": 1}, (2, 3), lambda t: t.unsqueeze(1)),
    ("unsqueeze", {"dim": -1}, (2, 3), lambda t: t.unsqueeze(-1)),
    ("unsqueeze", {"dim": -2}, (2, 3, 4), lambda t: t.unsqueeze(-2)),
    ("unsqueeze", {"dim": 0}, (), lambda t: t.unsqueeze(0))])
def test_squeeze_unsqueeze_match_torch(name, attrs, shape, fn):
    torch_check(name, attrs, [rand(*shape)], fn)


def test_squeeze_keeps_a_batch_of_one():
    t = T(("N", 1, 3))
    x = rand(1, 1, 3)
    (y,), bwd, _ = sym_run("squeeze", {}, [t], [x])
    assert y.shape == (1, 3)
    assert bwd(np.ones((1, 3)))[0].shape == (1, 1, 3)
    sym_parity("squeeze", {}, [t], [x])
    sym_parity("squeeze", {}, [T(("N", 3))], [rand(1, 3)])       # nothing to squeeze: Identity
    sym_parity("unsqueeze", {"dim": 1}, [T(("N", 3))], [rand(1, 3)])


# --------------------------------------------------------------------------- slice, select

def test_slice_shapes():
    assert shape_of("slice", {"dim": 1, "start": 1, "end": 3}, [T(("N", 5))]) == ("N", 2)
    assert shape_of("slice", {"dim": 1, "start": -3}, [T(("N", 5))]) == ("N", 3)
    assert shape_of("slice", {"dim": 1, "step": 2}, [T(("N", 5))]) == ("N", 3)
    assert shape_of("slice", {"dim": 1, "end": 100}, [T(("N", 5))]) == ("N", 5)
    assert shape_of("slice", {"dim": 1, "start": 1, "end": -1}, [T(("N", 5))]) == ("N", 3)
    # symbolic dims: a fixed-size result is fine, the whole dim keeps its symbol
    assert shape_of("slice", {"dim": 1, "start": 0, "end": 1}, [T(("N", "T", 8))]) == ("N", 1, 8)
    assert shape_of("slice", {"dim": 1, "start": -3}, [T(("N", "T", 8))]) == ("N", 3, 8)
    assert shape_of("slice", {"dim": 1, "start": -5, "end": -1, "step": 2}, [T(("N", "T", 8))]) == ("N", 2, 8)
    assert shape_of("slice", {"dim": 1}, [T(("N", "T", 8))]) == ("N", "T", 8)
    assert shape_of("slice", {"dim": 0, "start": 2, "end": 4}, [T(("N", 3))]) == (2, 3)


def test_slice_errors():
    e = raises("slice", {"dim": 1, "start": 1}, [T(("N", "T", 8))], "start", "[1:]", "'T'", "N×T×8")
    assert e.hint
    raises("slice", {"dim": 1, "start": 1, "end": -1}, [T(("N", "T"))], "start", "[1:-1]", "'T'")
    raises("slice", {"dim": 1, "end": -1}, [T(("N", "T"))], "end", "[0:-1]", "'T'")
    raises("slice", {"dim": 1, "step": 0}, [T(("N", 5))], "step", "positive")
    raises("slice", {"dim": 1, "start": 4, "end": 2}, [T(("N", 5))], "start", "[4:2]", "nothing")
    raises("slice", {"dim": 2}, [T(("N", 5))], "dim", "out of range")


SLICES = [{"dim": 1, "start": 1, "end": 3}, {"dim": -1, "start": -3}, {"dim": 0, "step": 2},
          {"dim": 1, "start": -4, "end": -1, "step": 2}, {"dim": 2, "end": 100}, {"dim": 1, "start": -100, "end": 2}]


@pytest.mark.parametrize("attrs", SLICES)
def test_slice_gradcheck_onnx_torch(attrs):
    x = rand(3, 5, 4)
    gradcheck("slice", attrs, [x])
    onnx_parity("slice", attrs, [x])
    (y,), _, _ = run("slice", attrs, [x])
    idx = [slice(None)] * 3
    idx[attrs["dim"]] = slice(attrs.get("start", 0), attrs.get("end"), attrs.get("step", 1))
    np.testing.assert_array_equal(y, x[tuple(idx)])


def test_slice_symbolic_onnx():
    sym_parity("slice", {"dim": 1, "start": 0, "end": 1}, [T(("N", "T", 3))], [rand(2, 4, 3)])
    sym_parity("slice", {"dim": 1, "start": -2}, [T(("N", "T", 3))], [rand(2, 5, 3)])


def test_select_shapes_errors():
    assert shape_of("select", {"dim": 1, "index": 0}, [T(("N", "T", 8))]) == ("N", 8)
    assert shape_of("select", {"dim": -1, "index": -1}, [T(("N", 3))]) == ("N",)
    raises("select", {"dim": 1, "index": 3}, [T(("N", 3))], "index", "3", "-3..2")
    raises("select", {"dim": 1, "index": -4}, [T(("N", 3))], "index", "out of range")
    raises("select", {"dim": 2, "index": 0}, [T(("N", 3))], "dim", "out of range")


@pytest.mark.parametrize("attrs", [{"dim": 1, "index": 0}, {"dim": -1, "index": -1}, {"dim": 0, "index": 2}])
def test_select_gradcheck_onnx_torch(attrs):
    x = rand(3, 4, 5)
    gradcheck("select", attrs, [x])
    onnx_parity("select", attrs, [x])
    torch = pytest.importorskip("torch")
    torch_check("select", attrs, [x], lambda t: t.select(attrs["dim"], attrs["index"]))


# --------------------------------------------------------------------------- sum, mean, max

REDUCE = ["sum", "mean", "max"]


def test_reduce_shapes_macs():
    for name in REDUCE:
        _, _, inf = infer(name, {}, [T(("N", 3, 4))])
        assert inf.outputs[0].shape == () and inf.macs == 12
        assert shape_of(name, {"dim": 1}, [T(("N", 3, 4))]) == ("N", 4)
        assert shape_of(name, {"dim": [1, -1], "keepdim": True}, [T(("N", 3, 4))]) == ("N", 1, 1)
        assert shape_of(name, {"dim": 0}, [T(("N", 3))]) == (3,)
        assert ops.OPS[name].primary == "dim"
    assert infer("mean", {"dim": 1}, [T(("N", 3), "int64")])[2].outputs[0].dtype == "float32"
    assert infer("sum", {"dim": 1}, [T(("N", 3), "int64")])[2].outputs[0].dtype == "int64"


@pytest.mark.parametrize("name", REDUCE)
def test_reduce_errors(name):
    raises(name, {"dim": 3}, [T(("N", 3, 4))], "dim", "out of range", "rank-3")
    raises(name, {"dim": [1, -2]}, [T(("N", 3, 4))], "dim", "twice")
    raises(name, {"dim": []}, [T(("N", 3, 4))], "dim", "empty")


REDUCE_ATTRS = [{}, {"dim": 1}, {"dim": -1, "keepdim": True}, {"dim": [0, 2]}, {"dim": [0, 2], "keepdim": True},
                {"keepdim": True}]


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("attrs", REDUCE_ATTRS)
def test_reduce_gradcheck(name, attrs):
    gradcheck(name, attrs, [rand(2, 3, 4)])


@pytest.mark.parametrize("opset", [17, 18, 21])
@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("attrs", REDUCE_ATTRS)
def test_reduce_onnx(name, attrs, opset):
    onnx_parity(name, attrs, [rand(2, 3, 4)], opset=opset)


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_int_onnx(opset):
    i = np.arange(12, dtype=np.int64).reshape(3, 4)
    for name in REDUCE:
        onnx_parity(name, {"dim": 1}, [i], opset=opset)
    assert run("mean", {"dim": 1}, [i])[0][0].dtype == np.float32


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("attrs", [{}, {"dim": 1}, {"dim": 0, "keepdim": True}])
def test_reduce_bool_as_torch(attrs, opset):
    """sum of a mask counts (int64, inferred bool before: the runtime gave int64) and max is any(); ONNX's
    ReduceSum/ReduceMax refused bool (found by tools/fuzz.py). Reference: torch."""
    torch = pytest.importorskip("torch")
    m = np.array([[True, False, True], [False, False, False]])
    kw = {"dim": attrs["dim"], "keepdim": attrs.get("keepdim", False)} if "dim" in attrs else {}
    for name, ref in (("sum", torch.sum), ("max", torch.amax)):
        (y,), _, inf = run(name, attrs, [m])
        want = ref(torch.tensor(m), **kw).numpy()
        assert y.dtype == want.dtype and inf.outputs[0].dtype == str(want.dtype)
        np.testing.assert_array_equal(y, want)
        onnx_parity(name, attrs, [m], opset=opset)


def test_matmul_refuses_bool():
    raises("matmul", {}, [T((3, 3), "bool"), T((3, 3), "bool")], None, "two bool", "PyTorch")


@pytest.mark.parametrize("attrs", REDUCE_ATTRS)
def test_reduce_torch(attrs):
    torch = pytest.importorskip("torch")
    dim, keep = attrs.get("dim"), attrs.get("keepdim", False)
    x = rand(2, 3, 4)
    x[0, 1, :2] = x[0, 1].max() + 1          # ties: torch.amax shares the gradient among them
    kw = {} if dim is None else {"dim": dim}
    torch_check("sum", attrs, [x], lambda t: torch.sum(t, **kw, keepdim=keep) if kw else
                (torch.sum(t, dim=(0, 1, 2), keepdim=True) if keep else torch.sum(t)))
    torch_check("mean", attrs, [x], lambda t: torch.mean(t, **kw, keepdim=keep) if kw else
                (torch.mean(t, dim=(0, 1, 2), keepdim=True) if keep else torch.mean(t)))
    torch_check("max", attrs, [x], lambda t: torch.amax(t, dim=dim if dim is not None else (0, 1, 2),
                                                        keepdim=keep))


def test_reduce_keeps_float32_and_scalars_are_arrays():
    x = rand(2, 3).astype(np.float32)
    for name in REDUCE:
        (y,), bwd, _ = run(name, {}, [x])
        assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float32
        assert bwd(np.ones((), np.float32))[0].dtype == np.float32


# --------------------------------------------------------------------------- expand

def test_expand_shapes():
    assert shape_of("expand", {"shape": ["N", -1, -1]}, [T((1, 1, 4))]) == ("N", 1, 4)
    assert shape_of("expand", {"shape": [2, 3, 5]}, [T((3, 1))]) == (2, 3, 5)
    assert shape_of("expand", {"shape": ["N", -1]}, [T(("N", 3))]) == ("N", 3)
    assert shape_of("expand", {"shape": [-1, 3, 4]}, [T(("N", 1, 4))]) == ("N", 3, 4)
    assert ops.OPS["expand"].primary == "shape"


def test_expand_errors():
    raises("expand", {"shape": [5, -1]}, [T((3, 1))], "shape", "size 3", "become 5", "3×1", "[5, -1]")
    raises("expand", {"shape": [-1, 3, 1]}, [T((3, 1))], "shape", "-1", "position 0")
    raises("expand", {"shape": [3]}, [T((3, 1))], "shape", "fewer")
    raises("expand", {"shape": ["T", -1]}, [T(("N", 3))], "shape", "size N", "become T")
    raises("expand", {"shape": [0, -1]}, [T((1, 3))], "shape", "0")


@pytest.mark.parametrize("target,shape", [([2, 3, 4], (3, 1)), ([-1, 4], (3, 1)), ([2, -1, -1], (1, 3, 2))])
def test_expand_gradcheck_onnx_torch(target, shape):
    x = rand(*shape)
    gradcheck("expand", {"shape": target}, [x])
    onnx_parity("expand", {"shape": target}, [x])
    torch_check("expand", {"shape": target}, [x], lambda t: t.expand(*target))


def test_expand_symbol_bound_at_run_time():
    token = rand(1, 1, 4)
    image = T(("N", 3))
    for n in (1, 5):
        (y,), bwd, inf = sym_run("expand", {"shape": ["N", -1, -1]}, [T((1, 1, 4))], [token],
                                 extra=[(image, rand(n, 3))])
        assert inf.outputs[0].shape == ("N", 1, 4) and y.shape == (n, 1, 4)
        np.testing.assert_array_equal(y[-1], token[0])
        (g,) = bwd(np.ones((n, 1, 4)))
        np.testing.assert_array_equal(g, np.full((1, 1, 4), float(n)))
    with pytest.raises(ValueError, match="'N'"):
        run("expand", {"shape": ["N", -1, -1]}, [token])


@pytest.mark.parametrize("opset", [17, 18])
def test_expand_symbolic_onnx(opset):
    for n in (1, 4):
        sym_parity("expand", {"shape": ["N", -1, -1]}, [T((1, 1, 4))], [rand(1, 1, 4)],
                   extra=[(T(("N", 3)), rand(n, 3))], opset=opset)
        sym_parity("expand", {"shape": ["N", 2, 3]}, [T((1, 3))], [rand(1, 3)],
                   extra=[(T(("N", 3)), rand(n, 3))], opset=opset)
        sym_parity("expand", {"shape": [-1, 3, -1]}, [T(("N", 1, 2))], [rand(n, 1, 2)], opset=opset)


# --------------------------------------------------------------------------- one_hot

def test_one_hot_shapes_errors():
    _, _, inf = infer("one_hot", {"num_classes": 10}, [T(("N",), "int64")])
    assert inf.outputs[0] == T(("N", 10), "float32")
    assert ops.OPS["one_hot"].primary == "num_classes"
    raises("one_hot", {"num_classes": 10}, [T(("N",))], None, "float32", "integer")
    raises("one_hot", {"num_classes": 0}, [T(("N",), "int64")], "num_classes", "positive")


def test_one_hot_kernel_onnx_torch():
    torch = pytest.importorskip("torch")
    idx = np.array([[0, 3], [2, 1], [3, 3]], dtype=np.int64)
    (y,), bwd, _ = run("one_hot", {"num_classes": 4}, [idx])
    assert bwd is None and y.dtype == np.float32
    np.testing.assert_array_equal(y, torch.nn.functional.one_hot(torch.tensor(idx), 4).numpy())
    onnx_parity("one_hot", {"num_classes": 4}, [idx])
    with pytest.raises(ValueError, match="out of range"):
        run("one_hot", {"num_classes": 3}, [idx])


def test_one_hot_of_a_scalar_exports():
    """A 0-d index gives [num_classes], as torch; ONNX's OneHot needs rank >= 1 (the checker refused; fuzzing)."""
    torch = pytest.importorskip("torch")
    idx = np.array(2, dtype=np.int64)
    (y,), _, _ = run("one_hot", {"num_classes": 4}, [idx])
    np.testing.assert_array_equal(y, torch.nn.functional.one_hot(torch.tensor(idx), 4).numpy())
    onnx_parity("one_hot", {"num_classes": 4}, [idx])


@pytest.mark.parametrize("attrs", [{"dim": 1, "end": 2**63 - 1}, {"dim": 1, "start": -2**63, "step": 2**63 - 1}])
def test_slice_with_bounds_at_the_int64_limits_exports(attrs):
    """Python slicing clamps any integer, and so does ONNX's Slice within int64."""
    x = rand(3, 5)
    (y,), _, _ = run("slice", attrs, [x])
    idx = [slice(None)] * 2
    idx[attrs["dim"]] = slice(attrs.get("start", 0), attrs.get("end"), attrs.get("step", 1))
    np.testing.assert_array_equal(y, x[tuple(idx)])
    onnx_parity("slice", attrs, [x])


@pytest.mark.parametrize("op,attrs", [("slice", {"dim": 1, "end": 2**64}), ("select", {"dim": 0, "index": 10**30}),
                                      ("slice", {"dim": 1, "step": -2**63 - 1}), ("reshape", {"shape": [-1, 2**70]}),
                                      ("linear", {"out_features": 10**400}),
                                      ("gat_conv", {"out_features": 2, "heads": 10**400})])
def test_attribute_integers_beyond_int64_are_refused(op, attrs):
    """They overflowed in NumPy, the lowerings (slice, select on a symbolic dim) and float maths in shape rules
    (gat_conv's heads); found by tools/fuzz.py."""
    with pytest.raises(pydantic.ValidationError, match="beyond the 64-bit range"):
        infer(op, attrs, [T(("N", 5))])

# --------------------------------------------------------------------------- param, constant

def test_param_shape_params():
    opdef, _, inf = infer("param", {"shape": [1, 1, 8]}, [])
    assert opdef.inputs == () and opdef.primary == "shape"
    assert inf.outputs[0] == T((1, 1, 8))
    assert [(p.name, p.shape, p.init.kind, p.buffer) for p in inf.params] == [("", (1, 1, 8), "zeros", False)]
    node = Node(name="class_token", op="param", attrs=None, inputs=[], params=inf.params)
    assert node.param_name(inf.params[0]) == "class_token"
    raises("param", {"shape": [1, 0]}, [], "shape", "positive")


def test_param_gradcheck_onnx():
    p = rand(1, 2, 3)
    (y,), bwd, _ = run("param", {"shape": [1, 2, 3]}, [], [p])
    assert y is p
    gradcheck("param", {"shape": [1, 2, 3]}, [], [p])
    onnx_parity("param", {"shape": [1, 2, 3]}, [], [p.astype(np.float32)])


def test_constant_shapes_errors():
    assert shape_of("constant", {"value": 2.5}, []) == ()
    assert shape_of("constant", {"value": [[1, 2, 3], [4, 5, 6]]}, []) == (2, 3)
    assert infer("constant", {"value": [1, 2]}, [])[2].outputs[0].dtype == "float32"
    raises("constant", {"value": [[1, 2], [3]]}, [], "value", "ragged")
    raises("constant", {"value": []}, [], "value", "empty")
    raises("constant", {"value": [1, "a"]}, [], "value", "'a'")


@pytest.mark.parametrize("value", [2.5, [1.0, -2.0], [[1, 2, 3], [4, 5, 6]]])
def test_constant_kernel_onnx(value):
    (y,), bwd, _ = run("constant", {"value": value}, [])
    assert bwd is None and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.asarray(value, np.float32))
    onnx_parity("constant", {"value": value}, [])


# --------------------------------------------------------------------------- the family is complete

def test_every_tensor_op_has_kernel_and_lowering():
    from compiler.onnx import LOWERINGS
    names = {n for n, d in ops.OPS.items() if d.family == "tensor"}
    assert names == {"identity", "add", "sub", "mul", "div", "matmul", "concat", "split", "reshape", "flatten",
                     "permute", "transpose", "squeeze", "unsqueeze", "slice", "select", "sum", "mean", "max",
                     "expand", "detach", "one_hot", "param", "constant",
                     "eq", "ne", "lt", "le", "gt", "ge", "where", "cast", "arange", "pad", "roll",
                     "buffer", "gather", "index_select"}
    for n in names:
        assert n in kernels.KERNELS and n in LOWERINGS, n
        assert ops.OPS[n].doc, n


def test_arith_and_concat_signatures():
    for n in ARITH + ["matmul"]:
        assert ops.OPS[n].inputs == ("a", "b")
    assert all(ops.OPS[n].optional == ("b",) and not ops.OPS[n].variadic for n in ARITH)
    assert ops.OPS["concat"].variadic and ops.OPS["concat"].inputs == ("x",)
    assert ops.OPS["constant"].inputs == () and ops.OPS["param"].inputs == ()


def test_kernel_ctx_node_namespace():
    # the squeeze kernel reads only `outputs` from ctx.node
    ctx = kernels.Ctx(ops.OPS["squeeze"].attrs.model_validate({}),
                      node=SimpleNamespace(outputs={"out": T(("N", 3))}))
    y, _ = kernels.KERNELS["squeeze"](ctx, rand(1, 1, 3))
    assert y.shape == (1, 3)
