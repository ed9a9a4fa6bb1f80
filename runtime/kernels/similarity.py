"""Similarity and distance between two batches of vectors."""
from __future__ import annotations

import math

import numpy as np

from .registry import Ctx, kernel, unbroadcast


def _align(a: np.ndarray, rank: int) -> np.ndarray:
    """A view of `a` with leading 1s up to `rank` (how NumPy broadcasting sees it)."""
    return a.reshape((1,) * (rank - a.ndim) + a.shape) if a.ndim < rank else a


@kernel("cosine_similarity")
def cosine_similarity(ctx: Ctx, x1: np.ndarray, x2: np.ndarray):
    eps = float(ctx.attrs.eps)
    shape = np.broadcast_shapes(x1.shape, x2.shape)
    rank = len(shape)
    axis = ctx.attrs.dim % rank
    a1, a2 = _align(x1, rank), _align(x2, rank)
    size = shape[axis]

    def last(a: np.ndarray) -> np.ndarray:          # the reduced axis moved last, broadcast along it
        a = np.moveaxis(a, axis, -1)
        return np.broadcast_to(a, a.shape[:-1] + (size,)) if a.shape[-1] != size else a

    def norm(a: np.ndarray) -> np.ndarray:          # ‖a‖ over the axis, as if broadcast along it
        v = np.moveaxis(a, axis, -1)
        s = np.einsum("...i,...i->...", v, v)
        if v.shape[-1] != size:                      # a size-1 axis repeated `size` times
            s = s * size
        return np.sqrt(s)

    dot = np.einsum("...i,...i->...", last(a1), last(a2))
    n1, n2 = norm(a1), norm(a2)
    c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
    inv = 1 / (c1 * c2)
    y = dot * inv

    def backward(gy):
        # dy/dx1 = x2 / (c1 c2) − y x1 / (c1 ‖x1‖)  (the second term only where ‖x1‖ > eps)
        a = np.expand_dims(gy * inv, axis)
        gy_y = gy * y
        grads = []
        for i, (xa, xb, n, c) in enumerate(((a1, a2, n1, c1), (a2, a1, n2, c2))):
            if not ctx.need(i):
                grads.append(None)
                continue
            k = np.expand_dims(gy_y * ((n > eps) / (c * c)), axis)
            g = xb * a - xa * k
            g = unbroadcast(g, xa.shape)
            grads.append(g.reshape((x1, x2)[i].shape))
        return tuple(grads)
    return y, backward


@kernel("pairwise_distance")
def pairwise_distance(ctx: Ctx, x1: np.ndarray, x2: np.ndarray):
    p, eps, keepdim = float(ctx.attrs.p), float(ctx.attrs.eps), ctx.attrs.keepdim
    d = np.subtract(x1, x2)
    d += eps
    ad = np.abs(d) if p not in (2, 0) else None
    if p == 2:
        n = np.sqrt(np.einsum("...i,...i->...", d, d))
    elif p == 1:
        n = np.einsum("...i->...", ad)
    elif math.isinf(p):
        n = ad.max(axis=-1) if p > 0 else ad.min(axis=-1)
    elif p == 0:
        n = np.count_nonzero(d, axis=-1).astype(d.dtype)
    else:
        n = np.power(np.einsum("...i->...", np.power(ad, p)), 1 / p)
    n = np.asarray(n, dtype=d.dtype)
    y = n[..., None] if keepdim else n

    def backward(gy):
        if not (ctx.need(0) or ctx.need(1)):
            return None, None
        g = (gy[..., 0] if keepdim else gy)[..., None]
        nn = n[..., None]
        nz = nn != 0
        # the gradient of the norm, as PyTorch's linalg_vector_norm_backward
        if p == 2:
            gd = d * (g * nz / np.where(nz, nn, 1))
        elif p == 1:
            gd = np.sign(d) * g
        elif math.isinf(p):
            hit = ad == nn
            gd = np.sign(d) * hit * (g / hit.sum(axis=-1, keepdims=True))
        elif p == 0:
            gd = np.zeros_like(d)
        elif p < 1:
            with np.errstate(divide="ignore"):
                gd = np.sign(d) * np.where(d == 0, 0, np.power(ad, p - 1)) * (g * np.power(nn, 1 - p))
        else:
            scale = g * nz / np.where(nz, np.power(nn, p - 1), 1)
            gd = (np.sign(d) * np.power(ad, p - 1) if p < 2 else d * np.power(ad, p - 2)) * scale
        gd = gd.astype(d.dtype, copy=False)
        g1 = unbroadcast(gd, x1.shape) if ctx.need(0) else None
        g2 = -unbroadcast(gd, x2.shape) if ctx.need(1) else None
        return g1, g2
    return y, backward
