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


# -- self-attention in inference ------------------------------------------------------------------------

@pytest.fixture
def attn_calls(monkeypatch):
    monkeypatch.delenv("SPECC_ORT_OPS", raising=False)
    assert ort_ops.attention_applies(np.zeros((1, 2, 4), np.float32), 2)     # its first-use check, done
    seen = []
    real = ort_ops.attention
    monkeypatch.setattr(ort_ops, "attention", lambda x, *a: seen.append(x.shape) or real(x, *a))
    return seen


def _mha(x, heads=4, causal=False, bias=True, mask=None, needs=None, wanted=(True, False)):
    e = x.shape[-1]
    rng = np.random.default_rng(e + heads)
    params = [rng.standard_normal((3 * e, e)).astype(np.float32) / np.sqrt(e)]
    params += [rng.standard_normal(3 * e).astype(np.float32)] if bias else []
    params += [rng.standard_normal((e, e)).astype(np.float32) / np.sqrt(e)]
    params += [rng.standard_normal(e).astype(np.float32)] if bias else []
    attrs = {"num_heads": heads, "causal": causal, "bias": bias}
    needs = needs or (False,) * (4 + len(params))
    (out, weights), bwd, _ = run("multi_head_attention", attrs, [x, None, None, mask], params, needs=needs,
                                 wanted=wanted)
    if x.dtype == np.float64:
        return out, None
    mod = torch.nn.MultiheadAttention(e, heads, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        mod.in_proj_weight.copy_(torch.from_numpy(params[0]))
        mod.out_proj.weight.copy_(torch.from_numpy(params[2 if bias else 1]))
        if bias:
            mod.in_proj_bias.copy_(torch.from_numpy(params[1]))
            mod.out_proj.bias.copy_(torch.from_numpy(params[3]))
        tx = torch.from_numpy(x)
        t = x.shape[1]
        am = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None
        km = None if mask is None else torch.from_numpy(mask)
        want, _ = mod(tx, tx, tx, attn_mask=am, key_padding_mask=km, need_weights=False)
    return out, want.numpy()


@pytest.mark.parametrize("shape,heads,causal,bias", [
    ((16, 64, 128), 4, False, True),         # the benchmark transformer's layer
    ((3, 7, 24), 3, True, True),             # causal
    ((2, 5, 16), 2, False, False),           # no bias
])
def test_self_attention_in_inference_matches_torch(attn_calls, shape, heads, causal, bias):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    got, want = _mha(x, heads, causal, bias)
    assert attn_calls == [shape]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_attention_that_needs_more_keeps_numpy(attn_calls, monkeypatch):
    """A key padding mask, gradients, the attention weights, float64 or the switch: the NumPy kernel."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    mask = np.zeros((2, 6), bool)
    mask[0, 4:] = True
    got, want = _mha(x, 2, mask=mask)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    _mha(x, 2, needs=(True,) + (False,) * 7)
    _mha(x, 2, wanted=(True, True))
    _mha(x.astype(np.float64), 2)
    monkeypatch.setenv("SPECC_ORT_OPS", "0")
    off, _ = _mha(x, 2)
    assert attn_calls == []
    monkeypatch.delenv("SPECC_ORT_OPS")
    on, _ = _mha(x, 2)
    assert attn_calls == [x.shape]
    np.testing.assert_allclose(on, off, rtol=1e-5, atol=1e-6)


def test_the_attention_self_check_passes_here():
    assert ort_ops._check_attention()


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """A run stays reproducible whatever threads onnxruntime gets: same bits at one and at two threads."""
    rng = np.random.default_rng(11)
    x4 = (rng.standard_normal((16, 8, 32, 32)) * 2 + 1).astype(np.float32)
    w, b = rng.random(8).astype(np.float32), rng.random(8).astype(np.float32)
    x3 = rng.standard_normal((8, 32, 64)).astype(np.float32)
    w_in, b_in = rng.standard_normal((192, 64)).astype(np.float32) / 8, rng.standard_normal(192).astype(np.float32)
    w_out, b_out = rng.standard_normal((64, 64)).astype(np.float32) / 8, rng.standard_normal(64).astype(np.float32)

    def both():
        return (ort_ops.batch_norm_train(x4, w, b, 1e-5), ort_ops.attention(x3, w_in, b_in, w_out, b_out, 4, True))

    monkeypatch.setattr(ort_ops, "_SPLIT_BYTES", 0)                   # threads.cap() threads
    (bn_many, at_many) = both()
    monkeypatch.setattr(ort_ops, "_SPLIT_BYTES", 1 << 60)             # one thread
    (bn_one, at_one) = both()
    for a, c in zip(bn_many, bn_one):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(at_many, at_one)


# -- layer norm without gradients ---------------------------------------------------------------------------

@pytest.fixture
def ln_calls(monkeypatch):
    monkeypatch.delenv("SPECC_ORT_OPS", raising=False)
    assert ort_ops.layer_norm_applies(np.zeros((512, 128), np.float32), 1)    # its first-use check, done
    seen = []
    real = ort_ops.layer_norm
    monkeypatch.setattr(ort_ops, "layer_norm", lambda x, *a: seen.append(x.shape) or real(x, *a))
    return seen


def _ln(x, attrs, affine=True, needs=None):
    rng = np.random.default_rng(x.size % 97)
    ns = attrs["normalized_shape"]
    shape = (ns,) if isinstance(ns, int) else tuple(ns)
    params = [rng.random(shape).astype(x.dtype) + 0.5, rng.standard_normal(shape).astype(x.dtype)] if affine else []
    needs = needs or (False,) * (1 + len(params))
    (y,), bwd, _ = run("layer_norm", attrs, [x], params, needs=needs)
    tw = torch.from_numpy(params[0]).double() if affine else None
    tb = torch.from_numpy(params[1]).double() if affine else None
    want = torch.nn.functional.layer_norm(torch.from_numpy(x).double(), shape, tw, tb, attrs.get("eps", 1e-5))
    return y, want.numpy(), bwd


@pytest.mark.parametrize("shape,ns,offset,affine", [
    ((16, 64, 128), 128, 0.0, True),          # the benchmark transformer's layer norms
    ((8, 64, 128), 128, 300.0, True),         # a large mean: the statistics stay accurate
    ((4, 32, 8, 64), [8, 64], 0.0, False),    # over two dims, no weight and bias
])
def test_layer_norm_without_gradients_matches_torch(ln_calls, shape, ns, offset, affine):
    x = (np.random.default_rng(1).standard_normal(shape) * 3 + offset).astype(np.float32)
    y, want, bwd = _ln(x, {"normalized_shape": ns, "elementwise_affine": affine}, affine)
    assert ln_calls == [shape] and bwd is None
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=2e-5)


def test_layer_norm_with_gradients_or_small_keeps_numpy(ln_calls):
    x = np.random.default_rng(2).standard_normal((16, 64, 128)).astype(np.float32)
    y, want, bwd = _ln(x, {"normalized_shape": 128}, needs=(True, False, False))
    assert bwd is not None and ln_calls == []
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=2e-5)
    _ln(x[:2, :8], {"normalized_shape": 128})                             # 8 KiB: a session call costs more
    _ln(x.astype(np.float64), {"normalized_shape": 128})
    assert ln_calls == []


def test_the_layer_norm_self_check_passes_here():
    assert ort_ops._check_layer_norm()


# -- big inference GEMMs on MLAS while onnxruntime's threads are about -------------------------------------

def test_inference_linear_runs_on_mlas_after_onnxruntime_ran(monkeypatch):
    from runtime import mlas_conv, threads
    from runtime.kernels import dense
    if not mlas_conv.gemm_ok(np.float32):
        pytest.skip("MLAS's GEMM is not available here")
    seen = []
    real = mlas_conv.gemm_nt
    monkeypatch.setattr(mlas_conv, "gemm_nt", lambda a, b, *r: seen.append((a.shape, b.shape)) or real(a, b, *r))
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1024, 128)).astype(np.float32)
    w = rng.standard_normal((512, 128)).astype(np.float32) / 11
    b = rng.standard_normal(512).astype(np.float32)
    want = torch.nn.functional.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                      torch.from_numpy(b).double()).numpy()

    def linear(x, needs=(False, False, False)):
        return run("linear", {"out_features": 512}, [x], [w, b], needs=needs)[0][0]

    monkeypatch.setattr(threads, "_ort_until", 0.0)
    np.testing.assert_allclose(linear(x), want, rtol=1e-4, atol=1e-4)        # onnxruntime idle: OpenBLAS
    assert seen == []
    threads.ort_ran()
    np.testing.assert_allclose(linear(x), want, rtol=1e-4, atol=1e-4)        # just ran: MLAS
    assert seen == [((1024, 128), (512, 128))]
    linear(x, needs=(True, True, True))                                      # training: OpenBLAS
    linear(x[:64])                                                           # small: OpenBLAS
    linear(x.astype(np.float64))
    assert len(seen) == 1
