"""Convolution on onnxruntime's MLAS kernels (runtime/mlas_conv.py) against PyTorch, and its dispatch.

Every comparison checks that MLAS really ran (a call counter on mlas_conv.conv), so these test that
path and not the NumPy one; float64 (the finite-difference checks) never takes it."""
import numpy as np
import pytest

from runtime import mlas_conv, ort_sessions, threads
from runtime.kernels import convolution as conv

from opcheck import run

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.skipif(mlas_conv.block_size() == 0, reason="no NCHWc convolution in this onnxruntime")


@pytest.fixture
def calls(monkeypatch):
    monkeypatch.delenv("SPECC_CONV_KERNEL", raising=False)
    seen = []
    real = mlas_conv.conv
    monkeypatch.setattr(mlas_conv, "conv", lambda *a, **k: seen.append(a[0].shape) or real(*a, **k))
    return seen


def _compare(shape, out_ch, k, padding=0, stride=1, dilation=1, nd=2, bias=True, needs=(True, True, True)):
    rng = np.random.default_rng(sum(shape) + out_ch + 7 * padding + 13 * stride)
    x = rng.standard_normal(shape).astype(np.float32)
    ks = (k, k + 1)[:nd] if nd == 2 else (k,)
    w = (rng.standard_normal((out_ch, shape[1]) + ks) / np.sqrt(shape[1] * np.prod(ks))).astype(np.float32)
    b = rng.standard_normal(out_ch).astype(np.float32)
    name = "conv2d" if nd == 2 else "conv1d"
    attrs = {"out_channels": out_ch, "kernel_size": list(ks), "padding": padding, "stride": stride,
             "dilation": dilation, "bias": bias}
    params = [w, b] if bias else [w]
    (y,), bwd, _ = run(name, attrs, [x], params, needs=needs[:len(params) + 1])
    fn = F.conv2d if nd == 2 else F.conv1d
    ts = [torch.tensor(v, requires_grad=True) for v in [x] + params]
    yt = fn(ts[0], ts[1], ts[2] if bias else None, padding=padding, stride=stride, dilation=dilation)
    gy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.tensor(gy))
    assert y.dtype == np.float32 and y.shape == tuple(yt.shape)
    scale = float(np.abs(yt.detach().numpy()).max())
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5 * scale)
    for g, t, need in zip(bwd(gy), ts, needs):
        if not need:
            assert g is None
            continue
        want = t.grad.numpy()
        assert g.shape == want.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("shape,out_ch,k,padding,stride,dilation", [
    ((2, 3, 9, 8), 5, 3, 1, 1, 1),           # fewer input channels than a block: NCHW input, OIHWBo filter
    ((3, 16, 7, 6), 16, 3, 1, 1, 1),         # whole blocks
    ((2, 20, 8, 9), 6, 3, 2, 1, 1),          # channels padded up to blocks both ways
    ((2, 32, 11, 10), 24, 3, 1, 2, 1),       # stride 2: the input gradient by stride phases
    ((2, 16, 12, 12), 8, 1, 0, 2, 1),        # a 1×1 stride-2 shortcut (ResNet's downsample)
    ((2, 8, 15, 13), 16, 5, 2, 3, 1),        # stride 3 over a 5×6 kernel: uneven phases
    ((1, 8, 12, 12), 40, 3, 2, 1, 2),        # dilation
    ((4, 6, 14, 14), 16, 5, 0, 1, 1),        # LeNet-5's second convolution
    ((2, 16, 8, 7), 8, 3, 3, 1, 1),          # padding over k − 1: the input gradient crops (negative pads)
])
def test_mlas_conv2d_matches_torch(calls, shape, out_ch, k, padding, stride, dilation):
    _compare(shape, out_ch, k, padding, stride, dilation)
    assert calls


def test_mlas_conv1d_without_bias_and_partial_needs(calls):
    _compare((3, 12, 17), 7, 3, padding=1, nd=1, bias=False)
    _compare((2, 16, 9, 9), 16, 3, padding=1, needs=(False, True, True))
    assert len(calls) >= 2


def test_dispatch():
    """Float64, groups, an input with C >= block and C % 4 != 0, negative padding or an empty batch keep
    the NumPy kernels; SPECC_CONV_KERNEL=numpy turns MLAS off."""
    b = mlas_conv.block_size()
    x32, w32 = np.zeros((2, 16, 8, 8), np.float32), np.zeros((8, 16, 3, 3), np.float32)
    no_pads = ((0, 0), (0, 0))
    assert mlas_conv.applies(x32, w32, 1, no_pads)
    assert not mlas_conv.applies(x32.astype(np.float64), w32.astype(np.float64), 1, no_pads)
    assert not mlas_conv.applies(x32, w32[:, :8], 2, no_pads)
    assert not mlas_conv.applies(np.zeros((2, b + 2, 8, 8), np.float32), np.zeros((8, b + 2, 3, 3), np.float32),
                                 1, no_pads)
    assert not mlas_conv.applies(x32, w32, 1, ((-1, 0), (0, 0)))
    assert not mlas_conv.applies(x32[:0], w32, 1, no_pads)


def test_off_switch_and_numpy_fallback_agree(monkeypatch, calls):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    attrs = {"out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False}
    (y_mlas,), _, _ = run("conv2d", attrs, [x], [w])
    assert len(calls) == 1
    monkeypatch.setenv("SPECC_CONV_KERNEL", "numpy")
    assert not mlas_conv.applies(x, w, 1, ((1, 1), (1, 1)))
    (y_np,), _, _ = run("conv2d", attrs, [x], [w])
    assert len(calls) == 1
    np.testing.assert_allclose(y_mlas, y_np, rtol=1e-5, atol=1e-5)


def test_sessions_use_the_blas_cap_even_in_a_one_thread_region(calls):
    """onnxruntime's pool shares work out dynamically, so small convolutions keep every thread (the
    one-thread regions of runtime/threads.py are for OpenBLAS's fixed split)."""
    x = np.random.default_rng(4).standard_normal((2, 16, 32, 32)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((16, 16, 3, 3)).astype(np.float32)
    assert 2 * 32 * 32 * w.size >= mlas_conv._MIN_SPLIT
    y_any = mlas_conv.conv(x, w, None, ((1, 1), (1, 1)), (1, 1), (1, 1))
    outside = threads.cap()
    with threads.single():
        assert threads.cap() == outside
        y_one = mlas_conv.conv(x, w, None, ((1, 1), (1, 1)), (1, 1), (1, 1))
    counts = {key[-1] for key in ort_sessions.keys() if key[0] == x.shape}
    assert counts == {outside}
    np.testing.assert_array_equal(y_any, y_one)
    tiny = x[:1, :, :6, :6].copy()                     # under _MIN_SPLIT: one thread
    mlas_conv.conv(tiny, w, None, ((1, 1), (1, 1)), (1, 1), (1, 1))
    assert {key[-1] for key in ort_sessions.keys() if key[0] == tiny.shape} == {1}


def _child_conv(x, w):
    (y,), _, _ = run("conv2d", {"out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False}, [x], [w])
    return y, mlas_conv.block_size()


def test_a_forked_child_falls_back_to_numpy():
    """onnxruntime's thread pools do not survive fork() (a session made in the child hung): a child of a
    process that loaded the MLAS kernels computes its convolutions with NumPy."""
    import multiprocessing as mp
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 16, 5, 5)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want, block = _child_conv(x, w)
    assert block > 0
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got, child_block = pool.apply_async(_child_conv, (x, w)).get(timeout=60)
    assert child_block == 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("shape,out_ch,k,stride,padding,output_padding", [
    ((2, 32, 7, 7), 16, 3, 2, 1, 1),         # the conv autoencoder's decoder
    ((3, 16, 5, 6), 8, 4, 2, 1, 0),
    ((2, 8, 4, 4), 12, 3, 3, 0, 2),
])
def test_mlas_conv_transpose2d_matches_torch(calls, shape, out_ch, k, stride, padding, output_padding):
    """conv_transpose2d's forward is the strided input gradient: stride phases on MLAS."""
    rng = np.random.default_rng(sum(shape) + k)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((shape[1], out_ch, k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
    b = rng.standard_normal(out_ch).astype(np.float32)
    attrs = {"out_channels": out_ch, "kernel_size": k, "stride": stride, "padding": padding,
             "output_padding": output_padding}
    (y,), bwd, _ = run("conv_transpose2d", attrs, [x], [w, b], needs=(True, True, True))
    ts = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    yt = F.conv_transpose2d(*ts, stride=stride, padding=padding, output_padding=output_padding)
    gy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(y).max()))
    for g, t in zip(bwd(gy), ts):
        want = t.grad.numpy()
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    assert calls


@pytest.mark.parametrize("shape,out_ch,k,padding,nd", [
    ((16, 6, 10, 10), 16, 5, 0, 2),          # LeNet-5's second convolution: a 6×6 map of a 5×6 kernel
    ((16, 8, 9, 7), 12, 3, 1, 2),
    ((20, 16, 11), 8, 3, 2, 1),              # conv1d
])
def test_weight_gradient_as_a_correlation(calls, monkeypatch, shape, out_ch, k, padding, nd):
    """A batch of >= 16 small maps takes _wgrad_by_corr (the batch as channels, gy as the filter)."""
    used = []
    real = conv._wgrad_by_corr
    monkeypatch.setattr(conv, "_wgrad_by_corr", lambda *a: used.append(1) or real(*a))
    _compare(shape, out_ch, k, padding, nd=nd)
    assert used


def test_gemm_nt_matches_numpy():
    rng = np.random.default_rng(7)
    for m, k, n in [(3, 5, 4), (32, 4096, 72), (17, 1, 9)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k)).astype(np.float32)
        want = a.astype(np.float64) @ b.T.astype(np.float64)
        np.testing.assert_allclose(mlas_conv.gemm_nt(a, b), want, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    assert mlas_conv.gemm_ok(np.float32) and not mlas_conv.gemm_ok(np.float64)


@pytest.fixture
def transposes(monkeypatch):
    seen = []
    real = mlas_conv.conv_transpose
    monkeypatch.setattr(mlas_conv, "conv_transpose", lambda *a: seen.append(a[0].shape) or real(*a))
    return seen


@pytest.mark.parametrize("shape,out_ch,k,padding,stride,dilation", [
    ((4, 6, 14, 14), 16, 5, 0, 1, 1),        # LeNet-5's second convolution: fewer input channels than a block
    ((8, 16, 14, 14), 32, 3, 1, 2, 1),       # the conv autoencoder's encoder: stride 2, one call
    ((2, 16, 12, 12), 8, 1, 0, 2, 1),        # a 1×1 stride-2 shortcut
    ((2, 8, 15, 13), 16, 5, 2, 3, 1),        # stride 3, the full gradient longer than the input
    ((2, 16, 13, 13), 16, 3, 2, 2, 2),       # stride and dilation
])
def test_input_gradient_as_conv_transpose(calls, transposes, shape, out_ch, k, padding, stride, dilation):
    """Where onnxruntime's ConvTranspose was faster (docs/benchmarks.md), the input gradient is one."""
    _compare(shape, out_ch, k, padding, stride, dilation)
    assert transposes


@pytest.mark.parametrize("shape,out_ch,k,padding,stride", [
    ((2, 32, 11, 10), 24, 3, 1, 2),
    ((2, 16, 15, 13), 16, 5, 2, 3),
])
def test_strided_input_gradients_by_stride_phases(calls, transposes, monkeypatch, shape, out_ch, k,
                                                 padding, stride):
    monkeypatch.setattr(conv, "_CT_STRIDED", False)
    phases = []
    real = conv._igrad_phases
    monkeypatch.setattr(conv, "_igrad_phases", lambda *a: phases.append(1) or real(*a))
    _compare(shape, out_ch, k, padding, stride)
    assert phases and not transposes


def test_conv_transpose_geometry_is_refused_where_onnxruntime_cannot_crop():
    gy, w = np.zeros((1, 4, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    # an output region reaching stride or more past the full gradient: no ConvTranspose output padding
    assert conv._transpose_geometry(gy, w, (2, 2), (1, 1), 1, (0, 0), (13, 11)) is None
    assert conv._transpose_geometry(gy, w, (2, 2), (1, 1), 1, (0, 0), (12, 11)) == (
        ((0, 0), (0, 0)), (2, 2), (1, 1), (1, 0))
    assert conv._transpose_geometry(gy.astype(np.float64), w.astype(np.float64), (2, 2), (1, 1), 1, (0, 0),
                                    (11, 11)) is None
    assert conv._transpose_geometry(gy, w[:, :1].repeat(2, 1)[:2], (2, 2), (1, 1), 2, (0, 0), (11, 11)) is None


def test_the_ort_ops_switch_keeps_the_correlations(calls, transposes, monkeypatch):
    monkeypatch.setenv("SPECC_ORT_OPS", "0")
    _compare((4, 6, 14, 14), 16, 5)
    _compare((8, 16, 14, 14), 32, 3, padding=1, stride=2)
    assert calls and not transposes


@pytest.mark.parametrize("swap_max", [0, 1 << 30])
def test_weight_gradient_gemm_either_way_round(calls, monkeypatch, swap_max):
    """_wgrad's GEMMs on MLAS computed as gw (big gradients) or as gwᵀ (small ones): both match PyTorch."""
    monkeypatch.setattr(conv, "_SWAP_MAX", swap_max)
    _compare((2, 8, 9, 9), 12, 3, padding=1)                 # batch < 16: im2col, not the correlation
    _compare((3, 3, 12, 12), 16, 5, padding=2, stride=2)


@pytest.mark.parametrize("shape,out_ch", [((2, 18, 9, 9), 5), ((3, 22, 8, 7), 12)])
def test_kept_im2col_columns_beside_mlas_gemms(shape, out_ch):
    """An input with C >= block and C % 4 != 0 runs forward on NumPy's im2col, which keeps its columns for
    the weight gradient when the batch is one block: that gradient is NumPy's GEMM over those columns in
    their layout (it was MLAS's over a folded layout they are not in: a shape error, exit 3, in training)."""
    assert not mlas_conv.applies(np.zeros(shape, np.float32), np.zeros((out_ch,) + shape[1:2] + (3, 3), np.float32),
                                 1, ((1, 1), (1, 1)))
    _compare(shape, out_ch, 3, padding=1)


@pytest.mark.parametrize("shape,out_ch,k,stride", [((6, 3, 20, 20), 8, 3, 1), ((5, 16, 12, 12), 24, 3, 2)])
def test_weight_gradient_blocks_side_by_side(calls, monkeypatch, shape, out_ch, k, stride):
    """_wgrad_mlas with one block per sample on two threads (one-thread GEMMs side by side): PyTorch's
    gradient, and the same bits as on one thread (partials summed in block order either way)."""
    monkeypatch.setattr(conv, "_BLOCK", 1)
    monkeypatch.setattr(conv, "_MIN_COLS", 1)
    monkeypatch.setattr(conv, "_WG_MIN_BATCH", 1 << 30)          # im2col, not the correlation
    monkeypatch.setattr(conv, "_SIDE_BY_SIDE_MACS", 0)              # side by side however small
    _compare(shape, out_ch, k, padding=1, stride=stride, needs=(False, True, True))
    rng = np.random.default_rng(5)
    xp = rng.standard_normal((shape[0], shape[1], shape[2] + 2, shape[3] + 2)).astype(np.float32)
    out = [(s_ - k) // stride + 1 for s_ in xp.shape[2:]]
    gy = rng.standard_normal((shape[0], out_ch, *out)).astype(np.float32)
    seen = []
    real = conv.parallel.run
    monkeypatch.setattr(conv.parallel, "run", lambda *a, **kw: seen.append(kw.get("threads")) or real(*a, **kw))
    got = {}
    for cap in (1, 2):
        monkeypatch.setattr(threads, "cap", lambda cap=cap: cap)
        seen.clear()
        got[cap] = conv._wgrad(xp, gy, (k, k), (stride, stride), (1, 1), 1)
        assert (2 in seen) == (cap == 2)                            # the blocks went to two threads
    assert np.array_equal(got[1].view(np.uint32), got[2].view(np.uint32))


def test_an_empty_batch_trains_to_zero_weight_gradients():
    """N = 0: no im2col block at all; the weight gradient is zeros (it raised IndexError)."""
    rng = np.random.default_rng(0)
    x = np.zeros((0, 16, 10, 10), np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    (y,), bwd, _ = run("conv2d", {"out_channels": 8, "kernel_size": 3, "padding": 1}, [x], [w, b])
    gx, gw, gb = bwd(np.zeros(y.shape, np.float32))
    assert y.shape == (0, 8, 10, 10) and gx.shape == x.shape
    assert gw.shape == w.shape and not gw.any() and not gb.any()


@pytest.mark.parametrize("shape,out_ch,k,stride", [((8, 64, 56, 56), 128, 1, 2), ((4, 3, 32, 32), 64, 3, 1)])
def test_transposed_weight_gradients_have_the_same_bits_at_any_cap(monkeypatch, shape, out_ch, k, stride):
    """More output channels than kk (a 1×1/2 downsample, a 3-channel first layer): threaded, MLAS's GEMM in
    this orientation gave other bits at two threads than at one; its GEMMs now run on one thread each."""
    rng = np.random.default_rng(4)
    xp = rng.standard_normal(shape).astype(np.float32)
    oh = (shape[2] - k) // stride + 1
    gy = rng.standard_normal((shape[0], out_ch, oh, oh)).astype(np.float32)
    got = []
    for cap in (1, 2):
        monkeypatch.setattr(threads, "cap", lambda cap=cap: cap)
        got.append(conv._wgrad(xp, gy, (k, k), (stride, stride), (1, 1), 1))
    assert np.array_equal(got[0].view(np.uint32), got[1].view(np.uint32))
