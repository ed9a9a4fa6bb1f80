"""Normalisation: batch_norm, layer_norm, dropout, standardize."""
from __future__ import annotations

import numpy as np

from .registry import Ctx, kernel


def _csum(a3: np.ndarray) -> np.ndarray:
    """Per-channel sum of an N×C×L array (contiguous inner reduction first, then over the batch)."""
    return a3.sum(axis=2).sum(axis=0) if a3.shape[2] > 1 else a3.sum(axis=(0, 2))


def _cdot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Per-channel Σ a·b of two N×C×L arrays without materialising the product."""
    return np.einsum("ncl,ncl->c", a3, b3)


@kernel("batch_norm")
def batch_norm(ctx: Ctx, x: np.ndarray, *p: np.ndarray):
    a = ctx.attrs
    if a.affine:
        weight, bias, running_mean, running_var, nbt = p
    else:
        (running_mean, running_var, nbt), weight, bias = p, None, None
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)                       # a view for contiguous input
    m = n * x3.shape[2]
    dt = x.dtype.type
    eps = dt(a.eps)

    if ctx.training:
        if m < 2:
            raise ValueError(f"batch_norm needs more than one value per channel in training, "
                             f"got input of shape {'×'.join(map(str, x.shape))}")
        mean = _csum(x3) / dt(m)
        xc = x3 - mean[:, None]                    # kept for backward (x̂ = xc·inv)
        var = _cdot(xc, xc) / dt(m)                # biased: used to normalise
        inv = 1.0 / np.sqrt(var + eps)
        scale = inv * weight if weight is not None else inv
        y = xc * scale[:, None]
        if bias is not None:
            y += bias[:, None]
        # running statistics, in place, as PyTorch: momentum (or cumulative average) and unbiased variance
        nbt += 1
        mom = a.momentum if a.momentum is not None else 1.0 / float(nbt)
        running_mean *= 1.0 - mom
        running_mean += mom * mean
        running_var *= 1.0 - mom
        running_var += (mom * m / (m - 1)) * var

        def backward(gy: np.ndarray):
            g3 = gy.reshape(n, c, -1)
            gb = _csum(g3)
            gxc = _cdot(g3, xc)                    # Σ gy·xc ; Σ gy·x̂ = gxc·inv
            gw = gxc * inv if weight is not None and ctx.need(1) else None
            gx = None
            if ctx.need(0):
                # gx = s·(gy − Σgy/M − x̂·Σ(gy·x̂)/M) with s = weight·inv, written as
                # s·gy + k·xc + h with per-channel k, h
                k = -scale * inv * inv * gxc / dt(m)
                h = -scale * gb / dt(m)
                gx = g3 * scale[:, None]
                tmp = xc * k[:, None]
                gx += tmp
                gx += h[:, None]
                gx = gx.reshape(x.shape)
            if weight is None:
                return (gx,) + (None,) * len(p)
            return (gx, gw, gb if ctx.need(2) else None) + (None,) * (len(p) - 2)

        return y.reshape(x.shape), backward

    inv = 1.0 / np.sqrt(running_var.astype(x.dtype, copy=False) + eps)
    scale = inv * weight if weight is not None else inv
    shift = -running_mean.astype(x.dtype, copy=False) * scale
    if bias is not None:
        shift = shift + bias
    y = x3 * scale[:, None]
    y += shift[:, None]

    def backward_eval(gy: np.ndarray):
        g3 = gy.reshape(n, c, -1)
        gx = (g3 * scale[:, None]).reshape(x.shape) if ctx.need(0) else None
        if weight is None:
            return (gx,) + (None,) * len(p)
        gb = _csum(g3)
        gw = _cdot(g3, x3 - running_mean.astype(x.dtype, copy=False)[:, None]) * inv if ctx.need(1) else None
        return (gx, gw, gb if ctx.need(2) else None) + (None,) * (len(p) - 2)

    return y.reshape(x.shape), backward_eval


@kernel("layer_norm")
def layer_norm(ctx: Ctx, x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None):
    a = ctx.attrs
    ns = a.normalized_shape
    k = 1 if ns is None or isinstance(ns, int) else len(ns)
    d = int(np.prod(x.shape[x.ndim - k:]))
    x2 = x.reshape(-1, d)
    dt = x.dtype.type
    mean = x2.sum(axis=1) / dt(d)
    xhat = x2 - mean[:, None]
    var = np.einsum("ij,ij->i", xhat, xhat) / dt(d)
    inv = 1.0 / np.sqrt(var + dt(a.eps))
    xhat *= inv[:, None]
    w = weight.reshape(-1) if weight is not None else None
    b = bias.reshape(-1) if bias is not None else None
    if w is not None:
        y = xhat * w
        if b is not None:
            y += b
    else:
        y = xhat.copy()

    def backward(gy: np.ndarray):
        g2 = gy.reshape(-1, d)
        gx = gw = gb = None
        if w is not None and ctx.need(1):
            gw = np.einsum("ij,ij->j", g2, xhat).reshape(weight.shape)
        if b is not None and ctx.need(2):
            gb = g2.sum(axis=0).reshape(bias.shape)
        if ctx.need(0):
            gxh = g2 * w if w is not None else g2.copy()
            c1 = gxh.sum(axis=1) / dt(d)
            c2 = np.einsum("ij,ij->i", gxh, xhat) / dt(d)
            gxh -= c1[:, None]
            gxh -= xhat * c2[:, None]
            gxh *= inv[:, None]
            gx = gxh.reshape(x.shape)
        return gx, gw, gb

    return y.reshape(x.shape), backward


@kernel("dropout")
def dropout(ctx: Ctx, x: np.ndarray):
    p = ctx.attrs.p
    if not ctx.training or p == 0.0:
        return x, lambda gy: (gy,)
    keep = ctx.rng.random(x.shape, dtype=np.float32) >= np.float32(p)
    mask = keep.astype(x.dtype)
    mask *= x.dtype.type(1.0 / (1.0 - p))
    y = x * mask

    def backward(gy: np.ndarray):
        return (gy * mask if ctx.need(0) else None,)

    return y, backward


@kernel("standardize")
def standardize(ctx: Ctx, x: np.ndarray, mean: np.ndarray, std: np.ndarray):
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    shape = (-1,) + (1,) * (x.ndim - 2)
    m = mean.astype(x.dtype, copy=False).reshape(shape)
    s = std.astype(x.dtype, copy=False).reshape(shape)
    y = x - m
    y /= s

    def backward(gy: np.ndarray):
        return (gy / s if ctx.need(0) else None, None, None)

    return y, backward
