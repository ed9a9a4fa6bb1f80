import numpy as np
import pytest

import compiler.ops as ops
from compiler.errors import ShapeError
from compiler.ir import TensorType
from opcheck import gradcheck, infer, rand, run

REDUCTIONS = ["mean", "sum", "none"]
F32, I64 = "float32", "int64"
r = np.random.default_rng(42)


def T(*shape, dtype=F32):
    return TensorType(tuple(shape), dtype)


def shape_error(name, attrs, inputs):
    with pytest.raises(ShapeError) as e:
        infer(name, attrs, inputs)
    return e.value


def labels(n_classes, *shape):
    return r.integers(0, n_classes, shape)


def probs(*shape):
    p = r.uniform(0.05, 1.0, shape)
    return p / p.sum(axis=1, keepdims=True)


# -- shape rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "bce_loss", "bce_with_logits", "cross_entropy", "nll_loss"])
def test_losses_are_registered_as_losses(name):
    opdef = ops.OPS[name]
    assert opdef.loss and opdef.inputs == ("input", "target") and opdef.attrs().reduction == "mean"


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "bce_loss", "bce_with_logits"])
def test_elementwise_loss_shapes(name):
    for red, want in [("mean", ()), ("sum", ()), ("none", ("N", 3, 4))]:
        _, _, inf = infer(name, {"reduction": red}, [T("N", 3, 4), T("N", 3, 4)])
        assert inf.outputs[0] == TensorType(want, F32) and inf.params == [] and inf.macs == 12


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "bce_loss", "bce_with_logits"])
def test_elementwise_loss_errors(name):
    e = shape_error(name, {}, [T("N", 1), T("N")])
    assert "same shape" in e.message and "N×1" in e.message and "shape N" in e.message
    e = shape_error(name, {}, [T("N", 3), T("N", 3, dtype=I64)])
    assert "int64" in e.message and "float32" in e.hint
    with pytest.raises(Exception):
        infer(name, {"reduction": "avg"}, [T("N"), T("N")])


def test_class_loss_shapes():
    for name in ["cross_entropy", "nll_loss"]:
        _, _, inf = infer(name, {}, [T("N", 10), T("N", dtype=I64)])
        assert inf.outputs[0] == T() and inf.macs == 10
        _, _, inf = infer(name, {"reduction": "none"}, [T("N", 5, 8, 8), T("N", 8, 8, dtype=I64)])
        assert inf.outputs[0] == T("N", 8, 8) and inf.macs == 5 * 64
    _, _, inf = infer("cross_entropy", {"reduction": "none", "label_smoothing": 0.1}, [T("N", 10), T("N", 10)])
    assert inf.outputs[0] == T("N")


def test_cross_entropy_errors():
    e = shape_error("cross_entropy", {}, [T("N", 10), T("N", 10, dtype=I64)])
    assert e.message == ("cross_entropy expects class indices of shape N (from logits N×10) "
                         "but its target has shape N×10 with dtype int64")
    assert "float32" in e.hint
    e = shape_error("cross_entropy", {}, [T("N", 10), T("N", 1, dtype=I64)])
    assert "shape N " in e.message and "N×1" in e.message
    e = shape_error("cross_entropy", {}, [T("N", 10), T("N")])
    assert "int64 class indices of shape N" in e.message and "dtype float32" in e.message and "int64" in e.hint
    e = shape_error("cross_entropy", {}, [T("N", 10), T("N", 9)])
    assert "N×9" in e.message
    e = shape_error("cross_entropy", {}, [T(10), T((), dtype=I64)])
    assert "N×C" in e.message
    e = shape_error("cross_entropy", {"label_smoothing": 1.5}, [T("N", 10), T("N", dtype=I64)])
    assert e.attr == "label_smoothing"
    e = shape_error("cross_entropy", {}, [T("N", 10), T("N", dtype="bool")])
    assert "bool" in e.message


def test_nll_loss_errors():
    e = shape_error("nll_loss", {}, [T("N", 10), T("N")])
    assert "int64" in e.message and "float32" in e.message
    e = shape_error("nll_loss", {}, [T("N", 10, 4), T("N", dtype=I64)])
    assert "shape N×4" in e.message and "N×10×4" in e.message
    e = shape_error("nll_loss", {}, [T("N", dtype=F32), T("N", dtype=I64)])
    assert "N×C" in e.message


# -- kernels: gradients, values and errors ------------------------------------------------------

@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "bce_with_logits"])
def test_elementwise_gradcheck(name, red):
    gradcheck(name, {"reduction": red}, [rand(3, 4) * 2, rand(3, 4, low=0.0, high=1.0)])


@pytest.mark.parametrize("red", REDUCTIONS)
def test_bce_gradcheck(red):
    gradcheck("bce_loss", {"reduction": red}, [rand(3, 4, low=0.1, high=0.9), rand(3, 4, low=0.0, high=1.0)])


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 2)])
def test_cross_entropy_gradcheck(red, eps, shape):
    attrs = {"reduction": red, "label_smoothing": eps}
    gradcheck("cross_entropy", attrs, [rand(*shape) * 3, labels(shape[1], shape[0], *shape[2:])])
    gradcheck("cross_entropy", attrs, [rand(*shape) * 3, probs(*shape)])


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4)])
def test_nll_gradcheck(red, shape):
    gradcheck("nll_loss", {"reduction": red}, [rand(*shape), labels(shape[1], shape[0], *shape[2:])])


def test_losses_keep_float32_and_give_scalars():
    x, t = rand(4, 3).astype(np.float32), rand(4, 3, low=0, high=1).astype(np.float32)
    for name in ["mse_loss", "l1_loss", "bce_loss", "bce_with_logits"]:
        xx = x * 0.4 + 0.5 if name == "bce_loss" else x
        (y,), bwd, _ = run(name, {}, [xx, t])
        assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float32
        gx, gt = bwd(np.ones((), np.float32))
        assert gx.dtype == np.float32 and gt.dtype == np.float32
    (y,), bwd, _ = run("cross_entropy", {}, [x, np.array([0, 2, 1, 1])])
    assert y.shape == () and y.dtype == np.float32 and bwd(np.ones((), np.float32))[0].dtype == np.float32


def test_int_targets_get_no_gradient_and_unneeded_grads_are_skipped():
    x = rand(4, 3)
    (_,), bwd, _ = run("cross_entropy", {}, [x, np.array([0, 2, 1, 1])])
    gx, gt = bwd(np.ones(()))
    assert gx is not None and gt is None
    (_,), bwd, _ = run("mse_loss", {}, [x, rand(4, 3)], needs=(True, False))
    assert bwd(np.ones(()))[1] is None
    (_,), bwd, _ = run("cross_entropy", {}, [x, probs(4, 3)], needs=(False, True))
    gx, gt = bwd(np.ones(()))
    assert gx is None and gt is not None


def test_class_index_out_of_range():
    for name in ["cross_entropy", "nll_loss"]:
        with pytest.raises(ValueError, match="class index 3 .* 3 classes"):
            run(name, {}, [rand(2, 3), np.array([0, 3])])
        with pytest.raises(ValueError, match="class index -1"):
            run(name, {}, [rand(2, 3), np.array([-1, 0])])


def test_bce_checks_range():
    with pytest.raises(ValueError, match="between 0 and 1.*sigmoid"):
        run("bce_loss", {}, [rand(2, 3) * 3, rand(2, 3, low=0, high=1)])
    with pytest.raises(ValueError, match="targets between 0 and 1"):
        run("bce_loss", {}, [rand(2, 3, low=0, high=1), rand(2, 3) + 2])


def test_bce_clamps_log_and_logits_are_stable():
    (y,), bwd, _ = run("bce_loss", {"reduction": "none"}, [np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 1.0])])
    np.testing.assert_allclose(y, [100, 100, np.log(2)])
    assert np.isfinite(bwd(np.ones(3))[0]).all()
    (y,), bwd, _ = run("bce_with_logits", {"reduction": "none"},
                       [np.array([1000.0, -1000.0, 0.0], np.float32), np.array([0.0, 1.0, 1.0], np.float32)])
    np.testing.assert_allclose(y, [1000, 1000, np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(bwd(np.ones(3, np.float32))[0], [1, -1, -0.5])


# -- PyTorch parity: values and gradients (input and float targets) ------------------------------

def _torch_check(torch_fn, name, attrs, x, t, float_target, rtol=1e-5, atol=1e-6):
    torch = pytest.importorskip("torch")
    (y,), bwd, _ = run(name, attrs, [x, t])
    gy = r.standard_normal(np.shape(y)).astype(x.dtype)
    gx, gt = bwd(gy)
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t, requires_grad=float_target)
    yt = torch_fn(xt, tt)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=rtol, atol=atol)
    if float_target:
        np.testing.assert_allclose(gt, tt.grad.numpy(), rtol=rtol, atol=atol)
    else:
        assert gt is None


@pytest.mark.parametrize("red", REDUCTIONS)
def test_elementwise_losses_torch(red):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t = rand(5, 3, 2).astype(np.float32) * 3, rand(5, 3, 2, low=0, high=1).astype(np.float32)
    p = rand(5, 3, 2, low=0.02, high=0.98).astype(np.float32)
    _torch_check(lambda a, b: F.mse_loss(a, b, reduction=red), "mse_loss", {"reduction": red}, x, t, True)
    _torch_check(lambda a, b: F.l1_loss(a, b, reduction=red), "l1_loss", {"reduction": red}, x, t, True)
    _torch_check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=red),
                 "bce_with_logits", {"reduction": red}, x, t, True)
    _torch_check(lambda a, b: F.binary_cross_entropy(a, b, reduction=red),
                 "bce_loss", {"reduction": red}, p, t, True, rtol=1e-4)


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape", [(6, 4), (2, 5, 3, 3)])
def test_cross_entropy_torch(red, eps, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    attrs = {"reduction": red, "label_smoothing": eps}
    x = (rand(*shape) * 4).astype(np.float32)
    fn = lambda a, b: F.cross_entropy(a, b, reduction=red, label_smoothing=eps)   # noqa: E731
    _torch_check(fn, "cross_entropy", attrs, x, labels(shape[1], shape[0], *shape[2:]), False)
    _torch_check(fn, "cross_entropy", attrs, x, probs(*shape).astype(np.float32), True)
    q = r.uniform(0, 1, shape).astype(np.float32)            # unnormalised "probabilities", as PyTorch allows
    _torch_check(fn, "cross_entropy", attrs, x, q, True)


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (2, 5, 3)])
def test_nll_loss_torch(red, shape):
    torch = pytest.importorskip("torch")
    x = np.log(probs(*shape)).astype(np.float32)
    _torch_check(lambda a, b: torch.nn.functional.nll_loss(a, b, reduction=red), "nll_loss", {"reduction": red},
                 x, labels(shape[1], shape[0], *shape[2:]), False)


# -- cross_entropy ignore_index ---------------------------------------------------------------------
def _with_ignored(n_classes, shape, ignore):
    t = labels(n_classes, *shape)
    t.flat[::3] = ignore                                      # every third target is padding
    return t


def test_cross_entropy_ignore_index_shape_rule():
    _, _, inf = infer("cross_entropy", {"ignore_index": 0}, [T("N", 10, "T"), T("N", "T", dtype=I64)])
    assert inf.outputs[0] == TensorType((), F32)
    _, _, inf = infer("cross_entropy", {"ignore_index": -100, "reduction": "none"}, [T("N", 10), T("N", dtype=I64)])
    assert inf.outputs[0] == TensorType(("N",), F32)
    e = shape_error("cross_entropy", {"ignore_index": 0}, [T("N", 10), T("N", 10)])
    assert "ignore_index" in e.message and "int64" in e.message and "probabilities" in e.message


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [0, -100])
def test_cross_entropy_ignore_index_gradcheck(red, eps, ignore):
    t = _with_ignored(5, (3, 4), ignore)                      # [N, T] targets of [N, C, T] logits
    gradcheck("cross_entropy", {"reduction": red, "label_smoothing": eps, "ignore_index": ignore},
              [rand(3, 5, 4) * 3, t])


def test_cross_entropy_ignore_index_values():
    x = rand(4, 3) * 2
    t = np.array([0, 2, 1, 2])
    (full,), _, _ = run("cross_entropy", {"reduction": "none"}, [x, t])
    (y,), bwd, _ = run("cross_entropy", {"ignore_index": 2}, [x, t])
    assert y == pytest.approx((full[0] + full[2]) / 2)        # the mean over the two kept targets
    gx, _ = bwd(np.ones(()))
    assert not gx[[1, 3]].any() and gx[[0, 2]].any()          # ignored rows get no gradient
    (none,), _, _ = run("cross_entropy", {"ignore_index": 2, "reduction": "none"}, [x, t])
    assert none[1] == 0 and none[3] == 0 and none[0] == pytest.approx(full[0])
    with pytest.raises(ValueError, match="class index 7"):   # indices other than ignore_index are still checked
        run("cross_entropy", {"ignore_index": 2}, [x, np.array([0, 7, 2, 2])])
    (allgone,), _, _ = run("cross_entropy", {"ignore_index": 2}, [x, np.full(4, 2)])
    assert np.isnan(allgone)                                  # 0/0, as PyTorch


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("shape,ignore", [((6, 4), 1), ((3, 5, 7), 0), ((2, 4, 3, 3), -100)])
def test_cross_entropy_ignore_index_torch(red, eps, shape, ignore):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = (rand(*shape) * 4).astype(np.float32)
    t = _with_ignored(shape[1], (shape[0], *shape[2:]), ignore)
    fn = lambda a, b: F.cross_entropy(a, b, reduction=red, label_smoothing=eps, ignore_index=ignore)  # noqa: E731
    _torch_check(fn, "cross_entropy", {"reduction": red, "label_smoothing": eps, "ignore_index": ignore},
                 x, t, False)
