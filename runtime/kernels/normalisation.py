"""Normalisation: batch_norm, layer_norm, dropout, standardize."""
from __future__ import annotations

import math

import numpy as np

from .registry import Ctx, kernel


class _Channels:
    """Per-channel helpers for an N×C×L view (L = H·W, or 1), written so that NumPy runs long inner loops.

    Broadcasting a per-channel vector over L costs one ufunc inner-loop call per (n, c) row; repeating it
    to a C·L row instead makes each call cover a whole sample and is about twice as fast. Sums avoid
    BLAS (a threaded GEMV with a vector of ones is fast alone but stalls badly on a busy machine).
    """

    def __init__(self, x: np.ndarray):
        self.n, self.c = x.shape[:2]
        self.l = math.prod(x.shape[2:])
        self.m = self.n * self.l

    def flat(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.n, self.c * self.l)

    def row(self, v: np.ndarray) -> np.ndarray:
        return np.repeat(v, self.l) if self.l > 1 else v

    def sum(self, a2: np.ndarray) -> np.ndarray:
        s = a2.sum(axis=0)
        return np.einsum("cl->c", s.reshape(self.c, self.l)) if self.l > 1 else s

    def dot(self, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
        """Σ a·b per channel, without materialising the product."""
        if self.l >= 64:
            return np.vecdot(a2.reshape(self.n, self.c, self.l), b2.reshape(self.n, self.c, self.l)).sum(axis=0)
        s = np.einsum("nk,nk->k", a2, b2)
        return s.reshape(self.c, self.l).sum(axis=1) if self.l > 1 else s


@kernel("batch_norm")
def batch_norm(ctx: Ctx, x: np.ndarray, *p: np.ndarray):
    a = ctx.attrs
    if a.affine:
        weight, bias, running_mean, running_var, nbt = p
    else:
        (running_mean, running_var, nbt), weight, bias = p, None, None
    ch = _Channels(x)
    x2 = ch.flat(x)                                # a view for contiguous input
    m = ch.m
    dt = x.dtype.type
    eps = dt(a.eps)

    if ctx.training:
        if m < 2:
            raise ValueError(f"batch_norm needs more than one value per channel in training, "
                             f"got input of shape {'×'.join(map(str, x.shape))}")
        mean = ch.sum(x2) / dt(m)
        xc = x2 - ch.row(mean)                     # kept for backward: x̂ = xc·inv
        var = ch.dot(xc, xc) / dt(m)               # biased: used to normalise (two-pass, accurate)
        inv = 1.0 / np.sqrt(var + eps)
        scale = inv * weight if weight is not None else inv
        y = xc * ch.row(scale)
        if bias is not None:
            y += ch.row(bias)
        # running statistics, in place, as PyTorch: momentum (or cumulative average) and unbiased variance
        nbt += 1
        mom = a.momentum if a.momentum is not None else 1.0 / float(nbt)
        running_mean *= 1.0 - mom
        running_mean += mom * mean
        running_var *= 1.0 - mom
        running_var += (mom * m / (m - 1)) * var

        def backward(gy: np.ndarray):
            g2 = ch.flat(gy)
            gb = ch.sum(g2)
            gxc = ch.dot(g2, xc)                   # Σ gy·xc ; Σ gy·x̂ = gxc·inv
            gw = gxc * inv if weight is not None and ctx.need(1) else None
            gx = None
            if ctx.need(0):
                # gx = s·(gy − Σgy/M − x̂·Σ(gy·x̂)/M) with s = weight·inv, as s·gy + k·xc + h
                k = -scale * inv * inv * gxc / dt(m)
                h = -scale * gb / dt(m)
                gx = g2 * ch.row(scale)
                t = np.multiply(xc, ch.row(k), out=xc)     # xc is not needed after this backward
                t += ch.row(h)
                gx += t
                gx = gx.reshape(x.shape)
            if weight is None:
                return (gx,) + (None,) * len(p)
            return (gx, gw, gb if ctx.need(2) else None) + (None,) * (len(p) - 2)

        return y.reshape(x.shape), backward

    inv = 1.0 / np.sqrt(running_var.astype(x.dtype, copy=False) + eps)
    scale = inv * weight if weight is not None else inv
    rm = running_mean.astype(x.dtype, copy=False)
    shift = -rm * scale
    if bias is not None:
        shift = shift + bias
    y = x2 * ch.row(scale)
    y += ch.row(shift)

    def backward_eval(gy: np.ndarray):
        g2 = ch.flat(gy)
        gx = (g2 * ch.row(scale)).reshape(x.shape) if ctx.need(0) else None
        if weight is None:
            return (gx,) + (None,) * len(p)
        gb = ch.sum(g2)
        gw = ch.dot(g2, x2 - ch.row(rm)) * inv if ctx.need(1) else None
        return (gx, gw, gb if ctx.need(2) else None) + (None,) * (len(p) - 2)

    return y.reshape(x.shape), backward_eval


@kernel("layer_norm")
def layer_norm(ctx: Ctx, x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None):
    a = ctx.attrs
    ns = a.normalized_shape
    k = 1 if ns is None or isinstance(ns, int) else len(ns)
    d = math.prod(x.shape[x.ndim - k:])
    x2 = x.reshape(-1, d)
    dt = x.dtype.type
    mean = np.einsum("ij->i", x2) / dt(d)         # einsum's row sums are ~3x faster than ndarray.sum
    xhat = x2 - mean[:, None]
    var = np.vecdot(xhat, xhat) / dt(d)           # two-pass variance (accurate)
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
        # consumes xhat (its buffer becomes gx): the tape calls backward once
        g2 = gy.reshape(-1, d)
        gx = gw = gb = None
        if w is not None and ctx.need(1):
            gw = np.einsum("ij,ij->j", g2, xhat).reshape(weight.shape)
        if b is not None and ctx.need(2):
            gb = g2.sum(axis=0).reshape(bias.shape)
        if ctx.need(0):
            # gx = inv·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = gy·weight
            gxh = g2 * w if w is not None else g2
            c1 = np.einsum("ij->i", gxh) / dt(d)
            c2 = np.vecdot(gxh, xhat) / dt(d)
            gx = xhat
            gx *= -c2[:, None]
            gx -= c1[:, None]
            gx += gxh
            gx *= inv[:, None]
            gx = gx.reshape(x.shape)
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
