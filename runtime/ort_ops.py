"""Single onnxruntime operators inside NumPy kernels: batch norm's training forward (float32).

Why: NumPy runs batch norm's forward as four or five passes over the activations on one core (the
statistics, centring, scale, shift); onnxruntime's BatchNormalization in training mode makes two, on
every thread: VGG's 32×32×32×32 batch norm took 1.27 ms in NumPy and 0.84 ms here (PyTorch: 0.80 ms),
a training step of the VGG 3 % less (docs/benchmarks.md). onnxruntime is a dependency of specc already
(as for runtime/mlas_conv.py).

`batch_norm_train`: y, and the batch's mean and biased variance (two-pass in onnxruntime: as accurate
as NumPy's), for float32 [N, C, L...] of at least MIN_BYTES; the backward stays NumPy
(runtime/kernels/normalisation.py). Tried and not kept: max pooling (MaxPool with indices, MaxUnpool
for the backward): its backward is 4x faster than NumPy's, its forward with indices slower, and
LeNet-5's step got 6 % slower (VGG's 1 % faster).

SPECC_ORT_OPS=0 turns this off, and the input gradients that runtime/kernels/convolution.py computes
as onnxruntime's ConvTranspose (runtime/mlas_conv.conv_transpose) too. A forked child of a process that started onnxruntime, and an
onnxruntime whose operator fails its first-use check against NumPy, keep NumPy too.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from . import ort_sessions, threads

MIN_BYTES = 256 << 10       # below this a session call (~30-50 µs) costs more than NumPy's passes
_SPLIT_BYTES = 1 << 20      # from this size the session uses threads.cap() threads, below it one
_checked: dict[str, bool] = {}


def enabled() -> bool:
    """SPECC_ORT_OPS unset or "1": use onnxruntime's batch norm and pooling where they apply; "0": never."""
    return os.environ.get("SPECC_ORT_OPS", "1").strip().lower() not in ("0", "off", "false", "numpy", "no")


def _usable(x: np.ndarray, name: str) -> bool:
    if x.dtype != np.float32 or x.nbytes < MIN_BYTES or not enabled() or ort_sessions.forked():
        return False
    ok = _checked.get(name)
    if ok is None:
        _checked[name] = True                        # the check itself runs the kernel
        try:
            ok = _SELF_TESTS[name]()
        except Exception:                           # noqa: BLE001 - any failure: keep the NumPy kernels
            ok = False
        _checked[name] = ok
    return ok


def _model(nodes: list, inputs: list, outputs: list, opset: int = 17) -> Any:
    from onnx import helper

    g = helper.make_graph(nodes, "op", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _run(key: tuple, nbytes: int, build: Callable[[int], Any], feeds: dict) -> list:
    n_threads = threads.cap() if nbytes >= _SPLIT_BYTES else 1
    sess = ort_sessions.cached(key + (n_threads,), lambda: ort_sessions.make(build(n_threads), n_threads))
    threads.other_pool_used()
    return sess.run(None, feeds)


# -- batch norm, training forward ---------------------------------------------------------------------

def batch_norm_applies(x: np.ndarray) -> bool:
    """Whether batch_norm_train takes x: float32 [N, C, ...] with spatial dims, big enough."""
    return x.ndim >= 3 and x.shape[0] * int(np.prod(x.shape[2:])) > 1 and _usable(x, "batch_norm")


def batch_norm_train(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                     eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, biased variance) of batch norm over all dims but the channels (dim 1) of x, with the
    batch's own statistics; weight/bias None: 1 and 0."""
    from onnx import TensorProto, helper

    c = x.shape[1]
    f = TensorProto.FLOAT

    def build(_n: int):
        # momentum 0: the "running" outputs are the batch statistics themselves (ONNX: running =
        # running_in·momentum + batch·(1 − momentum)); specc updates its running buffers itself
        node = helper.make_node("BatchNormalization", ["x", "w", "b", "m", "v"], ["y", "mean", "var"],
                                training_mode=1, momentum=0.0, epsilon=float(eps))
        ins = [helper.make_tensor_value_info("x", f, list(x.shape))]
        ins += [helper.make_tensor_value_info(n, f, [c]) for n in "wbmv"]
        return _model([node], ins, [helper.make_tensor_value_info(n, f, None) for n in ("y", "mean", "var")],
                      opset=15)

    zero = np.zeros(c, np.float32)
    feeds = {"x": np.ascontiguousarray(x),
             "w": np.ones(c, np.float32) if weight is None else np.ascontiguousarray(weight, np.float32),
             "b": zero if bias is None else np.ascontiguousarray(bias, np.float32), "m": zero, "v": zero}
    y, mean, var = _run(("batch_norm", x.shape, float(eps)), x.nbytes, build, feeds)
    return y, mean, var


def _check_batch_norm() -> bool:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 3, 5, 7)) * 2 + 3).astype(np.float32)
    w, b = rng.random(3).astype(np.float32), rng.random(3).astype(np.float32)
    y, mean, var = batch_norm_train(x, w, b, 1e-5)
    x64 = x.astype(np.float64)
    m64, v64 = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    ref = (x64 - m64[:, None, None]) / np.sqrt(v64[:, None, None] + 1e-5) * w[:, None, None] + b[:, None, None]
    return (y.shape == x.shape and np.allclose(mean, m64, rtol=1e-5, atol=1e-5)
            and np.allclose(var, v64, rtol=1e-5, atol=1e-6) and np.allclose(y, ref, rtol=1e-4, atol=1e-4))


_SELF_TESTS = {"batch_norm": _check_batch_norm}
