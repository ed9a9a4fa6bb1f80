import math

import numpy as np
import pytest

from compiler.errors import ShapeError
from opcheck import gradcheck, infer, onnx_parity, rand, run

INF = float("inf")


# --- shape rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,attrs,out", [
    (("N", 8), ("N", 8), {}, ("N",)),
    (("N", 4, 3), ("N", 4, 3), {"dim": 1}, ("N", 3)),
    (("N", 1, 8), (1, 5, 8), {}, ("N", 5)),
    ((8,), ("N", 8), {}, ("N",)),
    (("N", 8), ("N", 8), {"dim": 0}, (8,)),
])
def test_cosine_shapes(a, b, attrs, out):
    opdef, _, inf = infer("cosine_similarity", attrs, [a, b])
    assert opdef.inputs == ("x1", "x2") and opdef.primary is None
    assert inf.outputs[0].shape == out and inf.params == []


def test_cosine_macs_three_dot_products():
    _, _, inf = infer("cosine_similarity", {}, [("N", 5, 8), ("N", 5, 8)])
    assert inf.macs == 3 * 5 * 8


def test_cosine_mismatch_names_both_shapes():
    with pytest.raises(ShapeError) as e:
        infer("cosine_similarity", {}, [("N", 8), ("N", 6)])
    assert "N×8" in e.value.message and "N×6" in e.value.message


def test_cosine_dim_out_of_range():
    with pytest.raises(ShapeError) as e:
        infer("cosine_similarity", {"dim": 2}, [("N", 8), ("N", 8)])
    assert e.value.attr == "dim" and "dim=2" in e.value.message


def test_cosine_negative_eps():
    with pytest.raises(ShapeError) as e:
        infer("cosine_similarity", {"eps": -1.0}, [("N", 8), ("N", 8)])
    assert e.value.attr == "eps"


@pytest.mark.parametrize("name", ["cosine_similarity", "pairwise_distance"])
def test_refuses_integer_inputs(name):
    with pytest.raises(ShapeError) as e:
        infer(name, {}, [np.zeros((2, 3)), np.zeros((2, 3), np.int64)])
    assert "x2 is int64" in e.value.message


@pytest.mark.parametrize("name", ["cosine_similarity", "pairwise_distance"])
def test_refuses_scalars(name):
    with pytest.raises(ShapeError) as e:
        infer(name, {}, [(), ()])
    assert "scalars" in e.value.message


@pytest.mark.parametrize("a,b,attrs,out", [
    (("N", 8), ("N", 8), {}, ("N",)),
    (("N", 8), ("N", 8), {"keepdim": True}, ("N", 1)),
    (("N", 5, 8), (8,), {"p": 1}, ("N", 5)),
    ((8,), (8,), {}, ()),
])
def test_pairwise_shapes(a, b, attrs, out):
    opdef, _, inf = infer("pairwise_distance", attrs, [a, b])
    assert opdef.primary is None
    assert inf.outputs[0].shape == out and inf.params == []


def test_pairwise_macs_one_per_element():
    _, _, inf = infer("pairwise_distance", {}, [("N", 5, 8), ("N", 5, 8)])
    assert inf.macs == 5 * 8


def test_pairwise_mismatch_names_both_shapes():
    with pytest.raises(ShapeError) as e:
        infer("pairwise_distance", {}, [("N", 128), ("N", 64)])
    assert "N×128" in e.value.message and "N×64" in e.value.message and "broadcast" in e.value.message


# --- values ------------------------------------------------------------------------------------------

def test_cosine_known_values():
    x1 = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    x2 = np.array([[0.0, 2.0], [-3.0, -3.0], [1.0, 0.0]])
    (y,), _, _ = run("cosine_similarity", {}, [x1, x2])
    np.testing.assert_allclose(y, [0.0, -1.0, 0.0], atol=1e-12)


def test_pairwise_known_values():
    x1 = np.array([[3.0, 4.0], [1.0, 1.0]])
    x2 = np.zeros((2, 2))
    (y,), _, _ = run("pairwise_distance", {"eps": 0.0}, [x1, x2])
    np.testing.assert_allclose(y, [5.0, math.sqrt(2)])
    (y,), _, _ = run("pairwise_distance", {"eps": 0.0, "p": 1}, [x1, x2])
    np.testing.assert_allclose(y, [7.0, 2.0])
    (y,), _, _ = run("pairwise_distance", {"eps": 0.0, "p": INF, "keepdim": True}, [x1, x2])
    np.testing.assert_allclose(y, [[4.0], [1.0]])


@pytest.mark.parametrize("name,attrs", [("cosine_similarity", {}), ("pairwise_distance", {}),
                                        ("pairwise_distance", {"p": 3.0})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(name, attrs, dtype):
    x1, x2 = rand(4, 6).astype(dtype), rand(6).astype(dtype)
    (y,), bwd, _ = run(name, attrs, [x1, x2])
    g1, g2 = bwd(np.ones_like(y))
    assert y.dtype == g1.dtype == g2.dtype == dtype
    assert g1.shape == x1.shape and g2.shape == x2.shape


def test_only_requested_gradients():
    x1, x2 = rand(4, 6), rand(4, 6)
    for name in ("cosine_similarity", "pairwise_distance"):
        (y,), bwd, _ = run(name, {}, [x1, x2], needs=(False, True))
        g1, g2 = bwd(np.ones_like(y))
        assert g1 is None and g2.shape == x2.shape


# --- gradients and ONNX --------------------------------------------------------------------------

COS = [
    ({}, (4, 6), (4, 6)),
    ({"dim": 1}, (2, 5, 3), (2, 5, 3)),
    ({"dim": 1}, (2, 5, 3), (5, 1)),            # broadcasting, x2 of lower rank
    ({"dim": -2}, (2, 1, 3), (2, 4, 3)),        # x1 broadcast along the reduced axis
    ({"dim": 0}, (3, 4), (1, 4)),
    ({"eps": 0.5}, (4, 6), (4, 6)),             # small vectors hit the clamp
]
PAIR = [
    ({}, (4, 6), (4, 6)),
    ({"keepdim": True}, (2, 3, 5), (5,)),
    ({"p": 1.0}, (4, 6), (4, 6)),
    ({"p": 3.0}, (4, 6), (1, 6)),
    ({"p": 1.5}, (4, 6), (4, 6)),
    ({"p": 0.5, "eps": 0.0}, (4, 6), (4, 6)),
    ({"p": -1.0}, (4, 6), (4, 6)),
    ({"p": INF}, (2, 3, 5), (3, 5)),
    ({"p": -INF, "keepdim": True}, (4, 6), (4, 6)),
]


def _small(shape):
    return rand(*shape) * 0.3


@pytest.mark.parametrize("attrs,s1,s2", COS)
def test_cosine_gradcheck(attrs, s1, s2):
    mk = _small if attrs.get("eps") else (lambda s: rand(*s))
    gradcheck("cosine_similarity", attrs, [mk(s1), mk(s2)])


@pytest.mark.parametrize("attrs,s1,s2", PAIR)
def test_pairwise_gradcheck(attrs, s1, s2):
    gradcheck("pairwise_distance", attrs, [rand(*s1), rand(*s2)])


def test_pairwise_p0_counts_nonzeros_with_zero_gradient():
    x1 = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]])
    x2 = np.array([1.0, 2.0, 0.0])
    (y,), bwd, _ = run("pairwise_distance", {"p": 0, "eps": 0.0}, [x1, x2])
    np.testing.assert_array_equal(y, [1.0, 2.0])
    g1, g2 = bwd(np.ones(2))
    assert not g1.any() and not g2.any()


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("attrs,s1,s2", COS)
def test_cosine_onnx(attrs, s1, s2, opset):
    mk = _small if attrs.get("eps") else (lambda s: rand(*s))
    onnx_parity("cosine_similarity", attrs, [mk(s1), mk(s2)], opset=opset)


@pytest.mark.parametrize("opset", [17, 18, 21])
@pytest.mark.parametrize("attrs,s1,s2", PAIR + [({"p": 0.0}, (4, 6), (4, 6))])
def test_pairwise_onnx(attrs, s1, s2, opset):
    onnx_parity("pairwise_distance", attrs, [rand(*s1), rand(*s2)], opset=opset)


# --- PyTorch parity -----------------------------------------------------------------------------

@pytest.mark.parametrize("attrs,s1,s2", COS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_torch(attrs, s1, s2, dtype):
    torch = pytest.importorskip("torch")
    mk = _small if attrs.get("eps") else (lambda s: rand(*s))
    x1, x2 = mk(s1).astype(dtype), mk(s2).astype(dtype)
    (y,), bwd, _ = run("cosine_similarity", attrs, [x1, x2])
    gy = rand(*y.shape).astype(dtype)
    g1, g2 = bwd(gy)
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ty = torch.nn.functional.cosine_similarity(t1, t2, dim=attrs.get("dim", -1), eps=attrs.get("eps", 1e-8))
    ty.backward(torch.tensor(gy))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    if not attrs.get("eps"):   # below eps PyTorch differentiates the unclamped norm; we treat the clamp as constant
        np.testing.assert_allclose(g1, t1.grad.numpy(), **tol)
        np.testing.assert_allclose(g2, t2.grad.numpy(), **tol)


@pytest.mark.parametrize("attrs,s1,s2", PAIR + [({"p": 0.0}, (4, 6), (4, 6))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_torch(attrs, s1, s2, dtype):
    torch = pytest.importorskip("torch")
    x1, x2 = rand(*s1).astype(dtype), rand(*s2).astype(dtype)
    (y,), bwd, _ = run("pairwise_distance", attrs, [x1, x2])
    gy = rand(*y.shape).astype(dtype)
    g1, g2 = bwd(gy)
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ty = torch.nn.functional.pairwise_distance(t1, t2, p=attrs.get("p", 2.0), eps=attrs.get("eps", 1e-6),
                                               keepdim=attrs.get("keepdim", False))
    ty.backward(torch.tensor(gy))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    for g, t in ((g1, t1), (g2, t2)):    # p = 0: PyTorch leaves no gradient at all (zero)
        np.testing.assert_allclose(g, t.grad.numpy() if t.grad is not None else np.zeros_like(g), **tol)
