"""Dense layers."""
from __future__ import annotations

import numpy as np

from .. import threads
from .registry import Ctx, kernel


@kernel("linear")
def linear(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    # forward and both gradients are GEMMs of the same m·k·n: one BLAS thread when small (runtime.threads)
    work = (x.size // max(1, x.shape[-1]), weight.shape[1], weight.shape[0])
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
