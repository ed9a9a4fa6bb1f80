"""Batch norm's training forward on onnxruntime (runtime/ort_ops.py) against PyTorch, and its dispatch.

Each comparison checks that onnxruntime really ran (a call counter on ort_ops.batch_norm_train), so these
test that path; the NumPy path is tested in test_ops_normalisation.py (small or float64 inputs)."""
import numpy as np
import pytest

from runtime import ort_ops
from runtime.kernels import normalisation

from opcheck import run

torch = pytest.importorskip("torch")


@pytest.fixture
def calls(monkeypatch):
    monkeypatch.delenv("SPECC_ORT_OPS", raising=False)
    seen = []
    real = ort_ops.batch_norm_train
    monkeypatch.setattr(ort_ops, "batch_norm_train", lambda x, *a: seen.append(x.shape) or real(x, *a))
    return seen


def _bn(x, affine=True, momentum=0.1, eps=1e-5, steps=1):
    """specc's batch_norm (training) and torch's BatchNorm{1,2}d on x: outputs, gradients, buffers."""
    rng = np.random.default_rng(x.ndim + x.shape[1])
    c = x.shape[1]
    w, b = rng.random(c).astype(x.dtype) + 0.5, rng.standard_normal(c).astype(x.dtype)
    attrs = {"num_features": c, "affine": affine, "momentum": momentum, "eps": eps}
    rm, rv, nbt = np.zeros(c, x.dtype), np.ones(c, x.dtype), np.zeros((), np.int64)
    params = ([w, b] if affine else []) + [rm, rv, nbt]
    mod = {3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[x.ndim](
        c, eps=eps, momentum=momentum, affine=affine).to(torch.float64 if x.dtype == np.float64 else torch.float32)
    if affine:
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(w))
            mod.bias.copy_(torch.from_numpy(b))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    for _ in range(steps):
        (y,), bwd, _ = run("batch_norm", attrs, [x], params, training=True,
                           needs=(True,) + ((True, True) if affine else ()) + (False,) * 3)
        grads = bwd(gy)
        mod.zero_grad()
        tx = torch.tensor(x, requires_grad=True)
        ty = mod(tx)
        ty.backward(torch.from_numpy(gy))
    want = [ty.detach().numpy(), tx.grad.numpy()] + ([mod.weight.grad.numpy(), mod.bias.grad.numpy()] if affine else [])
    got = [y, grads[0]] + (list(grads[1:3]) if affine else [])
    return got, want, (rm, rv), (mod.running_mean.numpy(), mod.running_var.numpy())


def _close(got, want):
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5 * float(np.abs(w).max()))


@pytest.mark.parametrize("shape,offset", [
    ((16, 8, 32, 32), 0.0),          # the VGG kind: NCHW, L = 1024
    ((4, 32, 48, 56), 3.0),          # a mean far from zero: the statistics stay two-pass accurate
    ((64, 40, 40), -2.0),            # BatchNorm1d over a sequence [N, C, L]
])
def test_batch_norm_on_onnxruntime_matches_torch(calls, shape, offset):
    x = (np.random.default_rng(sum(shape)).standard_normal(shape) * 2 + offset).astype(np.float32)
    got, want, buffers, torch_buffers = _bn(x, steps=2)
    assert shape in calls
    _close(got, want)
    _close(buffers, torch_buffers)                 # running mean and unbiased running variance


def test_batch_norm_without_affine(calls):
    x = np.random.default_rng(3).standard_normal((8, 16, 32, 32)).astype(np.float32)
    got, want, buffers, torch_buffers = _bn(x, affine=False, momentum=None)   # cumulative average
    assert calls
    _close(got, want)
    _close(buffers, torch_buffers)


def test_small_float64_and_switched_off_inputs_keep_numpy(calls, monkeypatch):
    small = np.random.default_rng(4).standard_normal((2, 3, 4, 4)).astype(np.float32)
    _bn(small)
    _bn(small.astype(np.float64).repeat(64, axis=2).repeat(64, axis=3)[:, :, :128, :128])
    assert calls == []
    big = np.random.default_rng(5).standard_normal((16, 8, 32, 32)).astype(np.float32)
    monkeypatch.setenv("SPECC_ORT_OPS", "0")
    got, want, *_ = _bn(big)
    assert calls == []
    _close(got, want)


def test_a_failing_self_check_keeps_numpy(calls, monkeypatch):
    monkeypatch.setattr(ort_ops, "_checked", {})
    monkeypatch.setitem(ort_ops._SELF_TESTS, "batch_norm", lambda: False)
    x = np.random.default_rng(6).standard_normal((16, 8, 32, 32)).astype(np.float32)
    got, want, *_ = _bn(x)
    assert calls == []
    _close(got, want)
    monkeypatch.setitem(ort_ops._SELF_TESTS, "batch_norm", lambda: 1 / 0)   # an exception: the same
    monkeypatch.setattr(ort_ops, "_checked", {})
    _bn(x)
    assert calls == []


def test_onnxruntime_and_numpy_paths_agree(calls, monkeypatch):
    """The same batch through both paths: outputs and every gradient within float32 rounding."""
    x = (np.random.default_rng(7).standard_normal((8, 16, 32, 32)) * 3 + 1).astype(np.float32)
    on, *_ = _bn(x)
    monkeypatch.setenv("SPECC_ORT_OPS", "0")
    off, *_ = _bn(x)
    assert len(calls) == 1
    _close(on, off)


def test_the_self_check_passes_here():
    assert ort_ops._check_batch_norm()
    assert normalisation.ort_ops is ort_ops
