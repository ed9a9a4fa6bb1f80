import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from compiler.errors import ShapeError
from opcheck import gradcheck, infer, make_params, onnx_parity, rand, run

# op -> a few attribute sets covering every attribute
GRID = {
    "relu": [{}],
    "leaky_relu": [{}, {"negative_slope": 0.2}, {"negative_slope": 1.5}, {"negative_slope": -0.3}],
    "prelu": [{}, {"init_value": -0.5}],          # per-channel variants below (need the channel count)
    "sigmoid": [{}],
    "tanh": [{}],
    "sign": [{}],
    "step": [{}],
    "silu": [{}],
    "softplus": [{}, {"beta": 2.0}, {"beta": 0.5, "threshold": 1.0}, {"threshold": 0.5}, {"beta": -1.0}],
    "gelu": [{}, {"approximate": "tanh"}],
    "elu": [{}, {"alpha": 0.5}, {"alpha": 2.0}],
    "softmax": [{}, {"dim": 1}, {"temperature": 0.5}, {"dim": 0, "temperature": 3.0}],
    "log_softmax": [{}, {"dim": 1}, {"dim": -2}],
}
ELEMENTWISE = [n for n in GRID if n not in ("softmax", "log_softmax")]
CASES = [(n, a) for n, grid in GRID.items() for a in grid]
ZERO_GRAD = ("sign", "step")


def away_from_kinks(*shape, scale=3.0, seed=None):
    """Random values with |x| >= 0.05, so finite differences never straddle a kink at 0."""
    x = rand(*shape) * scale
    return np.where(np.abs(x) < 0.05, np.copysign(0.05, x) + x, x)


# --- shape rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,attrs", CASES)
def test_shape_keeps_shape_and_counts_one_op_per_element(name, attrs):
    _, _, inf = infer(name, attrs, [("N", 3, 8, 8)])
    assert inf.outputs[0].shape == ("N", 3, 8, 8)
    assert inf.outputs[0].dtype == "float32"
    assert inf.macs == 3 * 8 * 8
    if name != "prelu":
        assert inf.params == []


def test_prelu_params_follow_pytorch():
    _, _, inf = infer("prelu", {}, [("N", 3, 8, 8)])
    (w,) = inf.params
    assert (w.name, w.shape) == ("weight", (1,))
    _, _, inf = infer("prelu", {"num_parameters": 3, "init_value": 0.1}, [("N", 3, 8, 8)])
    assert [(p.name, p.shape) for p in inf.params] == [("weight", (3,))]
    (w,) = make_params("prelu", {"num_parameters": 3, "init_value": 0.1}, [("N", 3, 8, 8)])
    np.testing.assert_array_equal(w, [0.1, 0.1, 0.1])
    (w,) = make_params("prelu", {}, [(2, 5)])
    np.testing.assert_array_equal(w, [0.25])


def test_no_primary_attributes_and_documented():
    from compiler.ops import OPS
    # the catalogue bolds no attribute of this family, so no scalar shorthand ({leaky_relu: 0.2} is an error)
    assert all(OPS[n].primary is None for n in GRID)
    assert all(OPS[n].doc for n in GRID), "every shape rule needs a docstring"


def test_prelu_channel_mismatch_names_attr():
    with pytest.raises(ShapeError) as e:
        infer("prelu", {"num_parameters": 16}, [("N", 6, 14, 14)])
    assert e.value.attr == "num_parameters"
    assert "16" in e.value.message and "6" in e.value.message and "N×6×14×14" in e.value.message


def test_prelu_per_channel_needs_channel_dim():
    with pytest.raises(ShapeError) as e:
        infer("prelu", {"num_parameters": 4}, [(4,)])
    assert e.value.attr == "num_parameters" and "rank 1" in e.value.message


def test_prelu_per_channel_needs_concrete_channels():
    with pytest.raises(ShapeError) as e:
        infer("prelu", {"num_parameters": 4}, [("N", "C", 5)])
    assert e.value.attr == "num_parameters" and "'C'" in e.value.message


def test_prelu_num_parameters_positive():
    with pytest.raises(ShapeError) as e:
        infer("prelu", {"num_parameters": 0}, [("N", 4)])
    assert e.value.attr == "num_parameters" and "0" in e.value.message


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_out_of_range(name):
    with pytest.raises(ShapeError) as e:
        infer(name, {"dim": 2}, [("N", 10)])
    assert e.value.attr == "dim" and "dim=2" in e.value.message and "rank-2" in e.value.message


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_softmax_temperature_positive(t):
    with pytest.raises(ShapeError) as e:
        infer("softmax", {"temperature": t}, [("N", 10)])
    assert e.value.attr == "temperature" and "positive" in e.value.message


def test_softplus_beta_zero():
    with pytest.raises(ShapeError) as e:
        infer("softplus", {"beta": 0}, [("N", 10)])
    assert e.value.attr == "beta"


def test_softplus_above_the_threshold_is_x_itself():
    """Where beta·x > threshold the output is x bit for bit, even when softplus(beta·x)/beta is huge (a small
    beta): the blend y + (x − y) lost x's low bits in float32 (found by tools/fuzz.py, ONNX disagreed)."""
    x = np.array([0.12573022, -0.13210486, 3.5, -2.0], np.float32)
    (y,), _, _ = run("softplus", {"beta": 1e-5, "threshold": -1.0}, [x])
    np.testing.assert_array_equal(y, x)
    (y,), _, _ = run("softplus", {"beta": 1.0, "threshold": 0.0}, [x])
    np.testing.assert_array_equal(y[x > 0], x[x > 0])
    np.testing.assert_allclose(y[x <= 0], np.log1p(np.exp(x[x <= 0])), rtol=1e-6)
    onnx_parity("softplus", {"beta": 1e-5, "threshold": -1.0}, [x])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_refuses_integer_input(name):
    with pytest.raises(ShapeError) as e:
        infer(name, {}, [np.zeros((2, 3), np.int64)])
    assert "int64" in e.value.message and "2×3" in e.value.message


def test_attribute_models_refuse_bad_values():
    with pytest.raises(ValidationError):
        infer("gelu", {"approximate": "erf"}, [("N", 4)])
    with pytest.raises(ValidationError):
        infer("relu", {"inplace": True}, [("N", 4)])


# --- semantics the catalogue spells out -------------------------------------------------------------

def test_step_is_the_unit_step_with_zero_gradient():
    x = np.array([-2.0, -0.0, 0.0, 1e-7, 3.0], np.float32)
    (y,), bwd, _ = run("step", {}, [x])
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1])
    assert y.dtype == np.float32
    g = bwd(np.ones_like(x))
    np.testing.assert_array_equal(g, np.zeros_like(x))
    assert g.dtype == np.float32


def test_sign_values_and_zero_gradient():
    x = np.array([-2.0, 0.0, 3.0])
    (y,), bwd, _ = run("sign", {}, [x])
    np.testing.assert_array_equal(y, [-1, 0, 1])
    np.testing.assert_array_equal(bwd(np.ones_like(x)), np.zeros(3))


def test_softmax_temperature_divides_logits():
    x = rand(4, 6)
    (y,), _, _ = run("softmax", {"temperature": 2.0}, [x])
    e = np.exp(x / 2.0)
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_survives_huge_spread(name):
    # one row far below the others: forces the per-row shift; no NaN, no inf
    x = np.array([[0.0, 1.0, 2.0], [-1000.0, -999.0, -998.0], [500.0, 1e4, -1e4]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y,), _, _ = run(name, {}, [x])
    z = x.astype(np.float64) - x.max(-1, keepdims=True)
    ref = z - np.log(np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(y, ref if name == "log_softmax" else np.exp(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "silu", "softplus", "gelu", "elu", "tanh"])
def test_extreme_inputs_stay_finite_without_warnings(name):
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y,), bwd, _ = run(name, {}, [x])
        g = bwd(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("name,attrs", [c for c in CASES if c[0] != "prelu"] + [("prelu", {"num_parameters": 3})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(name, attrs, dtype):
    x = rand(2, 3, 4).astype(dtype)
    params = [np.full(3 if attrs.get("num_parameters") else 1, 0.25, dtype)] if name == "prelu" else []
    (y,), bwd, _ = run(name, attrs, [x], params)
    grads = bwd(np.ones_like(y))
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in grads if g is not None)


def test_only_requested_gradients():
    x = rand(2, 3, 4)
    w = np.array([0.1, 0.2, 0.3])
    _, bwd, _ = run("prelu", {"num_parameters": 3}, [x], [w], needs=(False, True))
    gx, gw = bwd(np.ones_like(x))
    assert gx is None and gw.shape == (3,)
    _, bwd, _ = run("prelu", {"num_parameters": 3}, [x], [w], needs=(True, False))
    gx, gw = bwd(np.ones_like(x))
    assert gw is None and gx.shape == x.shape


# --- gradients ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,attrs", [c for c in CASES if c[0] not in ZERO_GRAD])
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 4, 5)])
def test_gradcheck(name, attrs, shape):
    x = away_from_kinks(*shape)
    if name == "softplus":                 # keep beta·x off the threshold switch too
        t, beta = attrs.get("threshold", 20.0), attrs.get("beta", 1.0)
        x = np.where(np.abs(beta * x - t) < 0.05, x + 0.1 / beta, x)
    params = [np.array([-0.3])] if name == "prelu" else None
    gradcheck(name, attrs, [x], params)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5)])
def test_prelu_per_channel_gradcheck(shape):
    gradcheck("prelu", {"num_parameters": 3}, [away_from_kinks(*shape)], [np.array([0.1, -0.4, 1.7])])


@pytest.mark.parametrize("name", ZERO_GRAD)
def test_zero_gradient_ops_return_zeros(name):
    x = rand(3, 4)
    _, bwd, _ = run(name, {}, [x])
    np.testing.assert_array_equal(bwd(rand(3, 4)), np.zeros((3, 4)))


# --- ONNX --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,attrs", CASES)
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 4, 5)])
def test_onnx(name, attrs, shape):
    onnx_parity(name, attrs, [away_from_kinks(*shape)])


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5)])
def test_onnx_prelu_per_channel(shape):
    onnx_parity("prelu", {"num_parameters": 3}, [rand(*shape)], [np.array([0.1, -0.4, 1.7])])


@pytest.mark.parametrize("opset", [17, 18, 20, 21])
@pytest.mark.parametrize("attrs", GRID["gelu"])
def test_onnx_gelu_opsets(attrs, opset):
    # native Gelu from opset 20, built from Erf/Tanh before
    onnx_parity("gelu", attrs, [rand(3, 50) * 4], opset=opset)


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("name,attrs", [c for c in CASES if c[0] != "gelu"])
def test_onnx_other_opsets(name, attrs, opset):
    onnx_parity(name, attrs, [away_from_kinks(2, 3, 4)], opset=opset)


def test_onnx_softplus_threshold_and_large_inputs():
    x = np.linspace(-40, 40, 161).reshape(7, 23)
    onnx_parity("softplus", {}, [x])
    onnx_parity("softplus", {"threshold": 2.0}, [x])
    onnx_parity("softplus", {"beta": 3.0, "threshold": 5.0}, [x])


# --- PyTorch parity (forward and gradients) ----------------------------------------------------------

def _torch_fn(torch, name, attrs, weight=None):
    F = torch.nn.functional
    a = attrs
    return {
        "relu": F.relu,
        "leaky_relu": lambda v: F.leaky_relu(v, a.get("negative_slope", 0.01)),
        "prelu": lambda v: F.prelu(v, weight),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "sign": torch.sign,
        "step": lambda v: (v > 0).to(v.dtype) + 0 * v,
        "silu": F.silu,
        "softplus": lambda v: F.softplus(v, beta=a.get("beta", 1.0), threshold=a.get("threshold", 20.0)),
        "gelu": lambda v: F.gelu(v, approximate=a.get("approximate", "none")),
        "elu": lambda v: F.elu(v, alpha=a.get("alpha", 1.0)),
        "softmax": lambda v: F.softmax(v / a.get("temperature", 1.0), dim=a.get("dim", -1)),
        "log_softmax": lambda v: F.log_softmax(v, dim=a.get("dim", -1)),
    }[name]


TORCH_CASES = [c for c in CASES if c[0] != "prelu"] + [
    ("prelu", {}), ("prelu", {"num_parameters": 3}), ("prelu", {"num_parameters": 3, "init_value": -0.2})]


@pytest.mark.parametrize("name,attrs", TORCH_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(name, attrs, dtype):
    torch = pytest.importorskip("torch")
    x = (away_from_kinks(2, 3, 4, 5) * 2).astype(dtype)
    x.reshape(-1)[:6] = [-60, -25, 0.0, 0.0, 25, 60]          # tails, and the kink itself
    params = []
    if name == "prelu":
        n = attrs.get("num_parameters", 1)
        params = [np.random.default_rng(3).uniform(-1, 1, n).astype(dtype)]
    gy = rand(2, 3, 4, 5).astype(dtype)
    (y,), bwd, _ = run(name, attrs, [x], params)
    grads = bwd(gy)
    grads = grads if isinstance(grads, tuple) else (grads,)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(params[0], requires_grad=True) if params else None
    ty = _torch_fn(torch, name, attrs, tw)(tx)
    ty.backward(torch.tensor(gy))
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol, err_msg=f"{name} forward")
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), **tol, err_msg=f"{name} d/dx")
    if tw is not None:
        np.testing.assert_allclose(grads[1], tw.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"{name} d/dweight")


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 2e-7), (np.float32, 2e-5)])
def test_gelu_left_tail_relative_precision(dtype, rtol):
    # against the standard library's erfc (PyTorch's 1 + erf(x/√2) cancels in this tail)
    import math
    x = -np.linspace(0, 12, 241)
    (y,), _, _ = run("gelu", {}, [x.astype(dtype)])
    ref = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x]
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=0)


def test_torch_sigmoid_left_tail_relative_precision():
    torch = pytest.importorskip("torch")
    x = -np.linspace(0, 80, 161).astype(np.float32)
    (y,), _, _ = run("sigmoid", {}, [x])
    np.testing.assert_allclose(y, torch.sigmoid(torch.tensor(x)).numpy(), rtol=2e-6, atol=0)


# --- relu6, hardtanh, clamp, hardsigmoid, hardswish ------------------------------------------------

def test_clipping_activations_values():
    x = np.array([-7.0, -3.0, -1.5, -1.0, 0.0, 0.5, 1.0, 3.0, 6.0, 8.0], np.float32)
    want = {
        ("relu6", ()): [0, 0, 0, 0, 0, 0.5, 1, 3, 6, 6],
        ("hardtanh", ()): [-1, -1, -1, -1, 0, 0.5, 1, 1, 1, 1],
        ("hardtanh", (("min_val", -2.0), ("max_val", 4.0))): [-2, -2, -1.5, -1, 0, 0.5, 1, 3, 4, 4],
        ("clamp", (("min", 0.5),)): [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 3, 6, 8],
        ("clamp", (("max", -1.0),)): [-7, -3, -1.5, -1, -1, -1, -1, -1, -1, -1],
        ("hardsigmoid", ()): [0, 0, 0.25, 1 / 3, 0.5, 3.5 / 6, 2 / 3, 1, 1, 1],
        ("hardswish", ()): [0, 0, -0.375, -1 / 3, 0, 0.5 * 3.5 / 6, 2 / 3, 3, 6, 8],
    }
    for (name, attrs), y in want.items():
        (out,), _, _ = run(name, dict(attrs), [x])
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, y, rtol=1e-6, atol=1e-7, err_msg=name)


def test_clipping_gradients_at_and_off_the_bounds():
    x = np.array([-4.0, -3.0, -1.0, 0.0, 2.0, 3.0, 6.0, 7.0])
    g = np.ones_like(x)
    grads = {
        "relu6": [0, 0, 0, 0, 1, 1, 0, 0],                    # strictly inside (0, 6), as torch
        "hardsigmoid": [0, 0, 1 / 6, 1 / 6, 1 / 6, 0, 0, 0],
        "hardswish": [0, 0, 1 / 6, 0.5, 7 / 6, 1, 1, 1],       # x/3 + 1/2 on (-3, 3), as torch
    }
    for name, want in grads.items():
        _, bwd, _ = run(name, {}, [x])
        np.testing.assert_allclose(bwd(g), want, rtol=1e-12, err_msg=name)
    _, bwd, _ = run("clamp", {"min": -1.0, "max": 6.0}, [x])
    np.testing.assert_array_equal(bwd(g), [0, 0, 1, 1, 1, 1, 1, 0])    # bounds included, as torch.clamp


@pytest.mark.parametrize("name,attrs,attr", [("clamp", {}, None), ("clamp", {"min": 2.0, "max": 1.0}, "min"),
                                             ("hardtanh", {"min_val": 1.0, "max_val": -1.0}, "min_val")])
def test_clipping_bounds_errors(name, attrs, attr):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, [("N", 4)])
    assert e.value.attr == attr and e.value.hint
