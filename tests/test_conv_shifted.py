"""The shifted-view stride-1 convolution (runtime/kernels/convolution.py, _Grid) against PyTorch.

The dispatch (enough channels, little padding waste, numpy's OpenBLAS reachable: runtime/blas.py) is
opened up by the `shifted` fixture so that odd shapes take the path too, and checked in every comparison
so that it tests that path and not the im2col one."""
import numpy as np
import pytest

from runtime import blas
from runtime.kernels import convolution as conv

from opcheck import run

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.skipif(not blas.fused(np.float32), reason="numpy's bundled OpenBLAS not found")


@pytest.fixture
def shifted(monkeypatch):
    monkeypatch.setenv("SPECC_CONV_KERNEL", "numpy")        # float32 would take MLAS (test_conv_mlas.py)
    monkeypatch.setattr(conv, "_SHIFT_MIN_CH", 1)
    monkeypatch.setattr(conv, "_SHIFT_MAX_CH", 1 << 30)
    monkeypatch.setattr(conv, "_SHIFT_MAX_POS", 1 << 30)
    monkeypatch.setattr(conv, "_SHIFT_WASTE", 1e9)


def _compare(shape, out_ch, k, padding, dtype, dilation=1, nd=2, needs=(True, True, True)):
    rng = np.random.default_rng(sum(shape) + out_ch + 7 * padding)
    x = rng.standard_normal(shape).astype(dtype)
    ks = (k, k + (1 if nd == 2 and k > 1 else 0))[:nd] if nd == 2 else (k,)
    w = (rng.standard_normal((out_ch, shape[1]) + ks) / np.sqrt(shape[1] * np.prod(ks))).astype(dtype)
    b = rng.standard_normal(out_ch).astype(dtype)
    name = "conv2d" if nd == 2 else "conv1d"
    attrs = {"out_channels": out_ch, "kernel_size": list(ks), "padding": padding, "dilation": dilation}
    pads = (((0, 0),) if nd == 1 else ()) + tuple((padding, padding) for _ in ks)
    x4, w4 = (x[:, :, None], w[:, :, None]) if nd == 1 else (x, w)
    assert conv._shifted_ok(x4, w4, (1, 1), ((1,) if nd == 1 else ()) + (dilation,) * nd, 1, pads)
    (y,), bwd, _ = run(name, attrs, [x], [w, b], needs=needs)
    fn = F.conv2d if nd == 2 else F.conv1d
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    yt = fn(xt, wt, bt, padding=padding, dilation=dilation)
    gy = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.tensor(gy))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    grads = bwd(gy)
    for g, t, need in zip(grads, (xt, wt, bt), needs):
        if not need:
            assert g is None
            continue
        assert g.shape == tuple(t.shape) and g.dtype == dtype
        np.testing.assert_allclose(g, t.grad.numpy(), **tol)


@pytest.mark.parametrize("shape,out_ch,k,padding", [
    ((1, 17, 7, 9), 3, 3, 1),
    ((5, 3, 6, 5), 17, 1, 1),
    ((1, 1, 11, 8), 17, 5, 2),
    ((5, 17, 9, 10), 1, 7, 3),
    ((1, 3, 12, 13), 3, 3, 0),
    ((5, 17, 5, 14), 17, 5, 2),
    ((5, 16, 8, 8), 16, 3, 1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shifted_conv2d_matches_torch(shifted, shape, out_ch, k, padding, dtype):
    _compare(shape, out_ch, k, padding, dtype)


def test_shifted_conv2d_dilation_and_partial_needs(shifted):
    _compare((2, 16, 11, 10), 16, 3, 2, np.float64, dilation=2)
    _compare((2, 16, 9, 9), 16, 3, 1, np.float64, needs=(False, True, True))      # a first layer
    _compare((2, 16, 9, 9), 16, 3, 1, np.float64, needs=(True, False, False))
    _compare((2, 16, 9, 9), 16, 3, 1, np.float64, needs=(False, False, True))


def test_shifted_conv1d_matches_torch(shifted):
    _compare((3, 16, 23), 17, 5, 2, np.float64, nd=1)
    _compare((2, 17, 30), 16, 3, 1, np.float32, nd=1)


def test_dispatch_by_shape():
    """By default: VGG's 3×3 convs at 32 and 16 px take the shifted path; few or many channels, large
    images (measured no faster), much padding, a stride or groups keep the im2col path."""
    def ok(x, w, pad=1, st=(1, 1), groups=1):
        return conv._shifted_ok(np.zeros(x, np.float32), np.zeros(w, np.float32), st, (1, 1), groups, ((pad, pad),) * 2)
    assert ok((32, 32, 32, 32), (32, 32, 3, 3))
    assert not ok((64, 6, 14, 14), (16, 6, 5, 5), pad=0)
    assert ok((32, 64, 16, 16), (64, 64, 3, 3))
    assert not ok((32, 128, 4, 4), (128, 128, 3, 3))
    assert not ok((8, 256, 14, 14), (256, 256, 3, 3))
    assert not ok((8, 64, 56, 56), (64, 64, 3, 3))
    assert not ok((32, 32, 32, 32), (32, 32, 3, 3), st=(2, 2))
    assert not ok((32, 32, 32, 32), (32, 16, 3, 3), groups=2)


def test_blas_gemm_accumulates_in_place_on_row_ranges():
    rng = np.random.default_rng(1)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((40, 6)).astype(dt)
        w = rng.standard_normal((6, 5)).astype(dt)
        c = rng.standard_normal((50, 5)).astype(dt)
        want = c.copy()
        want[3:33] += x[7:37] @ w
        blas.gemm(x[7:37], w, c[3:33], beta=1.0)
        np.testing.assert_allclose(c, want, rtol=1e-5)
        gw = np.empty((6, 5), dt)
        blas.gemm(x[2:32].T, c[:30], gw, beta=0.0)               # a transposed operand
        np.testing.assert_allclose(gw, x[2:32].T @ c[:30], rtol=1e-5)


def test_an_op_record_case_takes_the_shifted_path(monkeypatch):
    """tests/test_op_records.py checks conv2d's record cases against finite differences and PyTorch: one of
    them must run the shifted path with the default dispatch."""
    from compiler import ops
    from opcheck import draw
    monkeypatch.setenv("SPECC_CONV_KERNEL", "numpy")
    calls = []
    real = conv._shifted_run
    monkeypatch.setattr(conv, "_shifted_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    for case in ops.OPS["conv2d"].cases:
        run("conv2d", case.attrs, draw(case, 0))
    assert calls


def test_blas_falls_back_to_numpy_for_other_layouts_and_when_off():
    import subprocess
    import sys
    from pathlib import Path
    rng = np.random.default_rng(2)
    a = rng.standard_normal((12, 8))[:, ::2]                    # no unit stride: numpy does it
    b = rng.standard_normal((4, 3))
    c = rng.standard_normal((12, 3))
    want = c + a @ b
    blas.gemm(a, b, c, beta=1.0)
    np.testing.assert_allclose(c, want)
    root = Path(__file__).resolve().parent.parent
    code = "from runtime import blas; import numpy as np; print(blas.fused(np.float32))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**__import__("os").environ, "SPECC_FUSED_GEMM": "off"}, check=True).stdout
    assert out.strip() == "False"
