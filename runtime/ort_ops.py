"""Single onnxruntime operators inside NumPy kernels (float32): batch norm's training forward, and
self-attention and layer norm where no gradient is wanted (inference).

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

`attention`: multi_head_attention with the query as key and value, in inference (no gradient, no
attention weights, no key padding mask): onnxruntime's fused com.microsoft Attention (projections,
scaled softmax, per-head products in one threaded kernel) and the output projection: the benchmark
transformer's layer 2.2 → 1.4 ms (PyTorch's fused fast path: 1.2 ms).

Neither holds OpenBLAS to one thread afterwards (runtime.threads.other_pool_used): in a conv net the
convolutions do that anyway, and a transformer's feed-forward GEMMs, as big as its attention, then ran on
one thread (its inference 10.0 ms with the hold, 8.2-8.5 without; with NumPy's attention 10.1).

SPECC_ORT_OPS=0 turns this off, and the input gradients that runtime/kernels/convolution.py computes as
onnxruntime's ConvTranspose (runtime/mlas_conv.conv_transpose) too. A forked child of a process that
started onnxruntime, and an onnxruntime whose operator fails its first-use check against NumPy, keep
NumPy too.
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
    """SPECC_ORT_OPS unset or "1": use these onnxruntime operators where they apply; "0": never."""
    return os.environ.get("SPECC_ORT_OPS", "1").strip().lower() not in ("0", "off", "false", "numpy", "no")


def _usable(x: np.ndarray, name: str, min_bytes: int = MIN_BYTES) -> bool:
    if x.dtype != np.float32 or x.nbytes < min_bytes or not enabled() or ort_sessions.forked():
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


def _model(nodes: list, inputs: list, outputs: list, opset: int = 17, contrib: bool = False) -> Any:
    from onnx import helper

    g = helper.make_graph(nodes, "op", inputs, outputs)
    domains = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    return helper.make_model(g, opset_imports=domains)


def _run(key: tuple, size: int, build: Callable[[], Any], feeds: dict) -> list:
    """The outputs of the session that build() makes (cached under key and the thread count); `size`
    (bytes, or multiply-adds) from _SPLIT_BYTES on runs on threads.cap() threads, below it on one."""
    n_threads = threads.cap() if size >= _SPLIT_BYTES else 1
    sess = ort_sessions.cached(key + (n_threads,), lambda: ort_sessions.make(build(), n_threads))
    threads.ort_ran()
    return sess.run(None, feeds)


# -- batch norm, training forward ---------------------------------------------------------------------

def batch_norm_applies(x: np.ndarray) -> bool:
    """Whether batch_norm_train takes x: float32 [N, C, ...] with spatial dims, big enough."""
    return x.ndim >= 3 and x.shape[0] * int(np.prod(x.shape[2:])) > 1 and _usable(x, "batch_norm")


def batch_norm_train(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                     eps: float, relu: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, biased variance) of batch norm over all dims but the channels (dim 1) of x, with the
    batch's own statistics; weight/bias None: 1 and 0; relu: y is relu(batch norm) (one more node in the
    same graph: onnxruntime runs it threaded, right after)."""
    from onnx import TensorProto, helper

    c = x.shape[1]
    f = TensorProto.FLOAT

    def build():
        # momentum 0: the "running" outputs are the batch statistics themselves (ONNX: running =
        # running_in·momentum + batch·(1 − momentum)); specc updates its running buffers itself
        nodes = [helper.make_node("BatchNormalization", ["x", "w", "b", "m", "v"],
                                  ["bn" if relu else "y", "mean", "var"], training_mode=1, momentum=0.0,
                                  epsilon=float(eps))]
        if relu:
            nodes.append(helper.make_node("Relu", ["bn"], ["y"]))
        ins = [helper.make_tensor_value_info("x", f, list(x.shape))]
        ins += [helper.make_tensor_value_info(n, f, [c]) for n in "wbmv"]
        return _model(nodes, ins, [helper.make_tensor_value_info(n, f, None) for n in ("y", "mean", "var")],
                      opset=15)

    zero = np.zeros(c, np.float32)
    feeds = {"x": np.ascontiguousarray(x),
             "w": np.ones(c, np.float32) if weight is None else np.ascontiguousarray(weight, np.float32),
             "b": zero if bias is None else np.ascontiguousarray(bias, np.float32), "m": zero, "v": zero}
    y, mean, var = _run(("batch_norm", x.shape, float(eps), relu), x.nbytes, build, feeds)
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


# -- layer norm, without gradients -------------------------------------------------------------------

def layer_norm_applies(x: np.ndarray, k: int) -> bool:
    """Whether layer_norm takes x: float32, big enough, normalised over its last k < ndim dims."""
    return 0 < k < x.ndim and x.size > 0 and _usable(x, "layer_norm")


def layer_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float,
               k: int) -> np.ndarray:
    """Layer norm of x over its last k dims (weight/bias of that shape, None: 1 and 0): onnxruntime's
    LayerNormalization, one pass per row with its statistics in double (as accurate as NumPy's two
    passes: tests/test_ort_ops.py); the transformer's [16, 64, 128]: 0.23 -> 0.09 ms."""
    from onnx import TensorProto, helper

    norm = list(x.shape[x.ndim - k:])
    f = TensorProto.FLOAT

    def build():
        node = helper.make_node("LayerNormalization", ["x", "w", "b"], ["y"], axis=-k, epsilon=float(eps))
        ins = [helper.make_tensor_value_info("x", f, list(x.shape)), helper.make_tensor_value_info("w", f, norm),
               helper.make_tensor_value_info("b", f, norm)]
        return _model([node], ins, [helper.make_tensor_value_info("y", f, None)])

    feeds = {"x": np.ascontiguousarray(x),
             "w": np.ones(norm, np.float32) if weight is None else np.ascontiguousarray(weight, np.float32).reshape(norm),
             "b": np.zeros(norm, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32).reshape(norm)}
    return _run(("layer_norm", x.shape, k, float(eps)), x.nbytes, build, feeds)[0]


def _check_layer_norm() -> bool:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5, 8)) * 2 + 100).astype(np.float32)       # a large mean: no one-pass loss
    w, b = rng.random(8).astype(np.float32), rng.random(8).astype(np.float32)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * w + b
    y = layer_norm(x, w, b, 1e-5, 1)
    return y.shape == x.shape and np.allclose(y, ref, rtol=1e-4, atol=2e-4)


# -- self-attention, inference ------------------------------------------------------------------------

def attention_applies(x: np.ndarray, heads: int) -> bool:
    """Whether `attention` takes this self-attention input [N, T, E] (float32, E divisible by heads)."""
    return x.ndim == 3 and x.shape[1] > 0 and x.shape[2] % heads == 0 and _usable(x, "attention", 0)


def attention(x: np.ndarray, w_in: np.ndarray, b_in: np.ndarray | None, w_out: np.ndarray,
              b_out: np.ndarray | None, heads: int, causal: bool) -> np.ndarray:
    """Multi-head self-attention of x [N, T, E] with PyTorch's packed weights (in_proj [3E, E], out_proj
    [E, E]): onnxruntime's fused com.microsoft Attention (the q, k, v projection, scaled softmax and the
    heads' products in one kernel) and the output projection."""
    from onnx import TensorProto, helper

    n, t, e = x.shape
    f = TensorProto.FLOAT

    def build():
        nodes = [helper.make_node("Attention", ["x", "w", "b"], ["att"], domain="com.microsoft", num_heads=heads,
                                  unidirectional=int(causal)),
                 helper.make_node("MatMul", ["att", "wo"], ["o"]), helper.make_node("Add", ["o", "bo"], ["y"])]
        ins = [helper.make_tensor_value_info("x", f, [n, t, e]), helper.make_tensor_value_info("w", f, [e, 3 * e]),
               helper.make_tensor_value_info("b", f, [3 * e]), helper.make_tensor_value_info("wo", f, [e, e]),
               helper.make_tensor_value_info("bo", f, [e])]
        return _model(nodes, ins, [helper.make_tensor_value_info("y", f, None)], contrib=True)

    feeds = {"x": np.ascontiguousarray(x), "w": np.ascontiguousarray(w_in.T, np.float32),
             "b": np.zeros(3 * e, np.float32) if b_in is None else np.ascontiguousarray(b_in, np.float32),
             "wo": np.ascontiguousarray(w_out.T, np.float32),
             "bo": np.zeros(e, np.float32) if b_out is None else np.ascontiguousarray(b_out, np.float32)}
    work = 4 * n * t * e * (e + t)                        # multiply-adds: projections, scores, products
    return _run(("attention", x.shape, heads, bool(causal)), work, build, feeds)[0]


def _check_attention() -> bool:
    rng = np.random.default_rng(2)
    n, t, e, h = 2, 5, 8, 2
    x = rng.standard_normal((n, t, e)).astype(np.float32)
    w_in, b_in = rng.standard_normal((3 * e, e)).astype(np.float32) / 3, rng.standard_normal(3 * e).astype(np.float32)
    w_out, b_out = rng.standard_normal((e, e)).astype(np.float32) / 3, rng.standard_normal(e).astype(np.float32)
    for causal in (False, True):
        qkv = x.astype(np.float64) @ w_in.T + b_in
        q, k, v = (qkv[..., i * e:(i + 1) * e].reshape(n, t, h, e // h).transpose(0, 2, 1, 3) for i in range(3))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(e // h)
        if causal:
            s = np.where(np.triu(np.ones((t, t), bool), 1), -np.inf, s)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        ref = (p @ v).transpose(0, 2, 1, 3).reshape(n, t, e) @ w_out.T + b_out
        y = attention(x, w_in, b_in, w_out, b_out, h, causal)
        if y.shape != ref.shape or not np.allclose(y, ref, rtol=1e-4, atol=1e-4):
            return False
    return True


_SELF_TESTS = {"batch_norm": _check_batch_norm, "attention": _check_attention, "layer_norm": _check_layer_norm}
