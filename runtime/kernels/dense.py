"""Dense layers."""
from __future__ import annotations

import math

import numpy as np

from .. import mlas_conv, threads
from .registry import Ctx, kernel


_MLAS_MIN = 1 << 26         # multiply-adds from which an inference GEMM may run on MLAS (_on_mlas)


def _on_mlas(ctx: Ctx, x: np.ndarray, weight: np.ndarray, work: tuple) -> bool:
    """A forward GEMM without gradients (inference) on MLAS rather than OpenBLAS: float32, big (from
    _MLAS_MIN), and onnxruntime's threads ran lately (attention, convolution, recurrent steps): then
    OpenBLAS's threads, spinning after each GEMM, and onnxruntime's took turns on the cores (the
    transformer's inference 8 % faster this way; always on MLAS, a plain MLP's was 7 % slower, and from
    2^24 multiply-adds the VGG's 4 % slower, its 32×2048×256 classifier GEMM too small to gain)."""
    return (not any(ctx.needs) and x.dtype == weight.dtype == np.float32 and x.ndim == 2
            and math.prod(work) >= _MLAS_MIN and threads.ort_recent() and mlas_conv.gemm_ok(np.float32))


@kernel("linear")
def linear(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    # forward and both gradients are GEMMs of the same m·k·n: one BLAS thread when small (runtime.threads)
    work = (x.size // max(1, x.shape[-1]), weight.shape[1], weight.shape[0])
    if _on_mlas(ctx, x, weight, work):
        y = mlas_conv.gemm_nt(x, weight)
    else:
        with threads.gemm(*work):
            y = x @ weight.T
    if bias is not None:
        y += bias

    def backward(gy: np.ndarray):
        g2 = gy.reshape(-1, gy.shape[-1])
        with threads.gemm(*work):
            gx = gy @ weight if ctx.need(0) else None
            gw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.need(1) else None
        gb = g2.sum(axis=0) if bias is not None and ctx.need(2) else None
        return gx, gw, gb

    return y, backward
