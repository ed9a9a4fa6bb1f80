"""Direct float32 convolution on onnxruntime's MLAS kernels (the NCHWc blocked layout).

Why: NumPy has no convolution, and im2col + OpenBLAS ran VGG's and ResNet-18's 3×3 convolutions 2.3-2.6×
slower than PyTorch's oneDNN at two threads; MLAS's direct NCHWc kernels run them at 0.9-1.2× PyTorch's
time (docs/benchmarks.md, "Convolution on MLAS"). onnxruntime is already a dependency of specc, so this is
a faster kernel from a library that is installed anyway, as NumPy's matmul is OpenBLAS.

How: the com.microsoft.nchwc operators (ReorderInput, Conv, ReorderOutput) are what onnxruntime's own
graph optimiser puts in place of a Conv whose filter is a constant. Here the filter is a graph *input*,
so one small session per geometry serves every call of a training run while the weights change: the
filter is reordered in NumPy on each call into the blocked layout OIHWBiBo (input and output channels
in blocks of B, B = 16 with AVX-512, 8 with AVX2), or OIHWBo when the input has fewer than B channels
(then the input is read as plain NCHW). The block size and the layout are read once from what the
optimiser itself produces for a probe convolution (`block_size`), and checked against a NumPy
reference; if anything differs (another CPU, another onnxruntime), MLAS is not used.

Used by runtime/kernels/convolution.py for every float32 one-group convolution (conv1d, conv2d,
conv_transpose2d): the forward correlation, the input gradient (a correlation with the flipped kernel,
per stride phase when strided, or onnxruntime's plain ConvTranspose where that was faster:
conv_transpose), the weight gradient of a batch of small maps (one more correlation), and the other
weight gradients' GEMMs (gemm_nt). Float64 (the gradient checks) and groups > 1 keep the NumPy kernels.
SPECC_CONV_KERNEL=numpy turns this off; the sessions use runtime.threads.cap() threads (also inside a
one-thread BLAS region: onnxruntime's pool shares work out dynamically), one below _MIN_SPLIT.
"""
from __future__ import annotations

import os
import tempfile
import numpy as np

from . import ort_sessions, threads

_DOMAIN = "com.microsoft.nchwc"
_MIN_SPLIT = 1 << 22        # multiply-adds from which a convolution uses more than one thread (below it
                            # waking a second thread cost more than it saved: docs/benchmarks.md)
_block: int | None = None


def enabled() -> bool:
    """SPECC_CONV_KERNEL unset, "auto" or "mlas": use MLAS where it applies; "numpy": never."""
    return os.environ.get("SPECC_CONV_KERNEL", "auto").strip().lower() != "numpy"


def _blocked(w: np.ndarray, b: int, block_in: bool) -> np.ndarray:
    """w [O, C, kh, kw] in the NCHWc filter layout: OIHWBiBo (block_in) or OIHWBo, O (and C) zero-padded
    to multiples of b."""
    o, c, kh, kw = w.shape
    op = -(-o // b) * b
    cp = -(-c // b) * b if block_in else c
    if (op, cp) != (o, c):
        wp = np.zeros((op, cp, kh, kw), np.float32)
        wp[:o, :c] = w
        w = wp
    if block_in:
        wb = w.reshape(op // b, b, cp // b, b, kh, kw).transpose(0, 2, 4, 5, 3, 1)
    else:
        wb = w.reshape(op // b, b, cp, kh, kw).transpose(0, 2, 3, 4, 1)
    return np.ascontiguousarray(wb).reshape(op, cp, kh, kw)


def _probe() -> int:
    """The NCHWc block size of this onnxruntime on this CPU, read from the optimiser's own rewrite of a
    probe convolution; 0 when the rewrite is absent or its filter layout is not the one expected."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    convs = [n for n in opt.graph.node if n.domain == _DOMAIN and n.op_type == "Conv"]
    inits = {i.name: numpy_helper.to_array(i) for i in opt.graph.initializer}
    if len(convs) != 1 or convs[0].input[1] not in inits:
        return 0
    filt = inits[convs[0].input[1]]
    for b in (4, 8, 16, 32, 64):
        if filt.shape == w.shape and np.array_equal(filt, _blocked(w, b, True)):
            return b
    return 0


def block_size() -> int:
    """B of the NCHWc layout here, or 0 when MLAS convolution is unavailable (probed once, checked)."""
    global _block
    if ort_sessions.forked():
        return 0
    if _block is None:
        ort_sessions.loaded()
        _block = 0
        if enabled():
            try:
                b = _probe()
                _block = b if b and _self_test(b) else 0
            except Exception:                       # noqa: BLE001 - any failure: keep the NumPy kernels
                _block = 0
    return _block


def _self_test(b: int) -> bool:
    """One small convolution per layout against a direct NumPy sum."""
    global _block
    _block = b
    rng = np.random.default_rng(1)
    for c in (3, 2 * b):
        x = rng.standard_normal((2, c, 6, 5)).astype(np.float32)
        w = rng.standard_normal((b + 3, c, 3, 2)).astype(np.float32)
        bias = rng.standard_normal(b + 3).astype(np.float32)
        y = conv(x, w, bias, ((1, 0), (0, 1)), (1, 1), (1, 1))
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 0), (0, 1)))
        ref = np.zeros(y.shape)
        for i in range(3):
            for j in range(2):
                ref += np.einsum("nchw,oc->nohw", xp[:, :, i:i + y.shape[2], j:j + y.shape[3]], w[:, :, i, j])
        ref += bias.reshape(-1, 1, 1)
        if not np.allclose(y, ref, rtol=1e-4, atol=1e-4):
            return False
    return True


def applies(x: np.ndarray, w: np.ndarray, groups: int, pads) -> bool:
    """Whether conv() takes this 2-D convolution: float32, one group, non-negative padding, an input
    with fewer channels than a block or a multiple of 4, and MLAS available."""
    if x.dtype != np.float32 or w.dtype != np.float32 or groups != 1 or x.ndim != 4 or x.shape[0] == 0:
        return False
    if any(p < 0 for lo_hi in pads for p in lo_hi):
        return False
    b = block_size() if enabled() else 0
    return b > 0 and (x.shape[1] < b or x.shape[1] % 4 == 0)


def _session(x_shape: tuple, w_shape: tuple, block_in: bool, bias: bool, pads, st, dl, o: int, n_threads: int):
    from onnx import TensorProto, helper

    (top, bottom), (left, right) = pads
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape)),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w_shape))]
    nodes, src = [], "x"
    if block_in:
        nodes.append(helper.make_node("ReorderInput", ["x"], ["xb"], domain=_DOMAIN, channels_last=0))
        src = "xb"
    conv_in = [src, "w"]
    if bias:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [w_shape[0]]))
        conv_in.append("b")
    nodes.append(helper.make_node("Conv", conv_in, ["yb"], domain=_DOMAIN, kernel_shape=list(w_shape[2:]),
                                  pads=[top, left, bottom, right], strides=list(st), dilations=list(dl),
                                  group=1))
    nodes.append(helper.make_node("ReorderOutput", ["yb"], ["y"], domain=_DOMAIN, channels_last=0, channels=o))
    g = helper.make_graph(nodes, "conv", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_DOMAIN, 1)])
    return ort_sessions.make(model, n_threads)


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, pads, st, dl) -> np.ndarray:
    """Cross-correlation y [N, O, oh, ow] of x [N, C, H, W] (float32) with w [O, C, kh, kw], plus bias;
    pads ((top, bottom), (left, right)); call only where applies() is true."""
    b = _block
    o, c = w.shape[:2]
    block_in = c >= b
    wb = _blocked(w, b, block_in)
    (top, bottom), (left, right) = pads
    oh = (x.shape[2] + top + bottom - dl[0] * (w.shape[2] - 1) - 1) // st[0] + 1
    ow = (x.shape[3] + left + right - dl[1] * (w.shape[3] - 1) - 1) // st[1] + 1
    macs = x.shape[0] * max(oh, 0) * max(ow, 0) * w.size
    n_threads = threads.cap() if macs >= _MIN_SPLIT else 1
    key = (x.shape, wb.shape, bias is not None, tuple(map(tuple, pads)), tuple(st), tuple(dl), o, n_threads)
    sess = ort_sessions.cached(key, lambda: _session(x.shape, wb.shape, block_in, bias is not None, pads, st, dl, o,
                                                     n_threads))
    threads.other_pool_used()
    feeds = {"x": np.ascontiguousarray(x), "w": wb}
    if bias is not None:
        bp = np.zeros(wb.shape[0], np.float32)
        bp[:o] = bias
        feeds["b"] = bp
    return sess.run(None, feeds)[0]


def gemm_ok(dtype) -> bool:
    """Whether gemm_nt serves this dtype here: float32 where the MLAS convolution is available."""
    return np.dtype(dtype) == np.float32 and enabled() and block_size() > 0


def gemm_nt(a: np.ndarray, b: np.ndarray, n_threads: int | None = None) -> np.ndarray:
    """a [M, K] · b [N, K]ᵀ (float32) on MLAS's GEMM through an onnxruntime Gemm session, for the weight
    gradients of convolutions: it keeps OpenBLAS's threads idle in a network whose convolutions run on
    MLAS (spinning OpenBLAS threads took the second core from onnxruntime's: docs/benchmarks.md), and
    MLAS's long-K GEMMs were as fast or faster. Call only where gemm_ok(float32) holds. n_threads: the
    session's threads (default: threads.cap() from _MIN_SPLIT multiply-adds, else 1)."""
    from onnx import TensorProto, helper

    if n_threads is None:
        n_threads = threads.cap() if a.shape[0] * a.shape[1] * b.shape[0] >= _MIN_SPLIT else 1
    key = ("gemm_nt", a.shape, b.shape, n_threads)

    def build():
        f = TensorProto.FLOAT
        g = helper.make_graph([helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)], "gemm",
                              [helper.make_tensor_value_info("a", f, list(a.shape)),
                               helper.make_tensor_value_info("b", f, list(b.shape))],
                              [helper.make_tensor_value_info("y", f, None)])
        return ort_sessions.make(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), n_threads)

    sess = ort_sessions.cached(key, build)
    threads.other_pool_used()
    return sess.run(None, {"a": np.ascontiguousarray(a, np.float32), "b": np.ascontiguousarray(b, np.float32)})[0]


_CT_SPLIT = 1 << 27         # multiply-adds from which conv_transpose uses more than one thread (its col2im
                            # is single-threaded: below this one thread was faster, docs/benchmarks.md)


def conv_transpose(x: np.ndarray, w: np.ndarray, pads, st, dl, out_pad) -> np.ndarray:
    """onnxruntime's ConvTranspose (GEMM + col2im in C++) of x [N, O, h, w] (float32) with w [O, C, kh, kw]
    (one group): the input gradient of the convolution by w, as a transposed convolution's forward.
    pads ((top, bottom), (left, right)) crop the full result, out_pad extends it at the end (< stride)."""
    from onnx import TensorProto, helper

    (top, bottom), (left, right) = pads
    macs = x.size * w.shape[1] * w.shape[2] * w.shape[3]
    n_threads = threads.cap() if macs >= _CT_SPLIT else 1
    key = ("conv_transpose", x.shape, w.shape, tuple(map(tuple, pads)), tuple(st), tuple(dl), tuple(out_pad),
           n_threads)

    def build():
        f = TensorProto.FLOAT
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=list(w.shape[2:]),
                                pads=[top, left, bottom, right], strides=list(st), dilations=list(dl),
                                output_padding=list(out_pad))
        g = helper.make_graph([node], "conv_transpose", [helper.make_tensor_value_info("x", f, list(x.shape)),
                                                          helper.make_tensor_value_info("w", f, list(w.shape))],
                              [helper.make_tensor_value_info("y", f, None)])
        return ort_sessions.make(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), n_threads)

    sess = ort_sessions.cached(key, build)
    threads.other_pool_used()
    return sess.run(None, {"x": np.ascontiguousarray(x), "w": np.ascontiguousarray(w)})[0]
