"""Losses: forward value and gradients w.r.t. the input (and float targets), as PyTorch."""
from __future__ import annotations

import numpy as np

from .registry import Ctx, kernel


def _reduce(ctx: Ctx, per: np.ndarray) -> np.ndarray:
    r = ctx.attrs.reduction
    if r == "none":
        return per
    s = per.sum(dtype=per.dtype)
    return np.asarray(s / per.dtype.type(per.size) if r == "mean" else s, dtype=per.dtype)


def _reduce_kept(ctx: Ctx, per: np.ndarray, count: int) -> np.ndarray:
    """As _reduce, the mean over `count` kept elements (0/0 = nan when none is kept, as PyTorch)."""
    if ctx.attrs.reduction != "mean":
        return _reduce(ctx, per)
    s = per.sum(dtype=per.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(s / per.dtype.type(count), dtype=per.dtype)


def _grad_scale(ctx: Ctx, g: np.ndarray, count: int, dtype) -> np.ndarray:
    """The upstream gradient as a per-element factor: g/count (mean), g (sum) or g itself (none)."""
    g = np.asarray(g, dtype=dtype)
    if ctx.attrs.reduction == "mean":
        return g / dtype.type(max(count, 1))
    return g


def _need_target(ctx: Ctx, t: np.ndarray) -> bool:
    return ctx.need(1) and t.dtype.kind == "f"


@kernel("mse_loss")
def mse_loss(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    d = x - t
    out = _reduce(ctx, d * d)

    def backward(g):
        k = _grad_scale(ctx, g, d.size, d.dtype)
        gx = d * (2 * k)
        return (gx if ctx.need(0) else None, -gx if _need_target(ctx, t) else None)

    return out, backward


@kernel("l1_loss")
def l1_loss(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    d = x - t
    out = _reduce(ctx, np.abs(d))

    def backward(g):
        gx = np.sign(d) * _grad_scale(ctx, g, d.size, d.dtype)
        return (gx if ctx.need(0) else None, -gx if _need_target(ctx, t) else None)

    return out, backward


def _check_unit(name: str, what: str, a: np.ndarray) -> None:
    if a.size and not (a.min() >= 0 and a.max() <= 1):    # NaN fails too
        raise ValueError(f"bce_loss expects {name} between 0 and 1, but {what} holds values from "
                         f"{np.nanmin(a):g} to {np.nanmax(a):g}"
                         + (" (apply a sigmoid first, or use bce_with_logits on the logits)" if name == "inputs" else ""))


@kernel("bce_loss")
def bce_loss(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    _check_unit("inputs", "its input", x)
    _check_unit("targets", "its target", t)
    dt = x.dtype.type
    with np.errstate(divide="ignore"):               # log 0 = -inf is clamped at -100: PyTorch's convention
        log_x = np.maximum(np.log(x), dt(-100))
        log_1mx = np.maximum(np.log1p(-x), dt(-100))
    per = (t - 1) * log_1mx - t * log_x
    out = _reduce(ctx, per)

    def backward(g):
        k = _grad_scale(ctx, g, x.size, x.dtype)
        gx = None
        if ctx.need(0):
            # PyTorch: (x − t) / max((1 − x)·x, 1e-12)
            gx = (x - t) / np.maximum((1 - x) * x, dt(1e-12)) * k
        gt = (log_1mx - log_x) * k if _need_target(ctx, t) else None
        return gx, gt

    return out, backward


@kernel("bce_with_logits")
def bce_with_logits(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    e = np.exp(-np.abs(x))                           # in (0, 1]: no overflow
    # (1 − t)·x − log σ(x) = max(x, 0) − t·x + log(1 + e^{−|x|})
    per = np.maximum(x, 0) - t * x + np.log1p(e)
    out = _reduce(ctx, per)

    def backward(g):
        k = _grad_scale(ctx, g, x.size, x.dtype)
        gx = None
        if ctx.need(0):
            sig = np.where(x >= 0, 1, e) / (1 + e)   # stable σ(x)
            gx = (sig - t) * k
        gt = -x * k if _need_target(ctx, t) else None
        return gx, gt

    return out, backward


def _check_classes(name: str, t: np.ndarray, c: int) -> None:
    if t.size and (t.min() < 0 or t.max() >= c):
        bad = t[(t < 0) | (t >= c)].reshape(-1)[0]
        raise ValueError(f"{name} got class index {bad} but the input has {c} classes (valid: 0..{c - 1})")


def _expand(k: np.ndarray, ndim: int) -> np.ndarray:
    """A per-sample factor (N×d…) or a scalar, broadcastable over the class dim 1."""
    return np.expand_dims(k, 1) if k.ndim == ndim - 1 else k


@kernel("cross_entropy")
def cross_entropy(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    eps = ctx.attrs.label_smoothing
    c = x.shape[1]
    dt = x.dtype.type
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    log_s = np.log(s)
    count = x.size // c if c else 0                  # elements of N×d…: the mean's divisor
    if t.dtype.kind != "f":
        ignore = getattr(ctx.attrs, "ignore_index", None)
        keep = None if ignore is None else np.expand_dims(t != ignore, 1)
        if keep is not None:
            _check_classes("cross_entropy", t[keep.squeeze(1)], c)
            t = np.where(keep.squeeze(1), t, 0)      # any valid index; those positions are zeroed below
            count = int(keep.sum())
        else:
            _check_classes("cross_entropy", t, c)
        idx = np.expand_dims(t, 1)
        zt = np.take_along_axis(z, idx, axis=1)
        # −(1−ε)·log p_t − (ε/C)·Σ_c log p_c  with  log p = z − log s
        per = log_s - dt(1 - eps) * zt
        if eps:
            per -= dt(eps / c) * z.sum(axis=1, keepdims=True)
        if keep is None:
            out = _reduce(ctx, per.squeeze(1))
        else:
            out = _reduce_kept(ctx, np.where(keep, per, dt(0)).squeeze(1), count)

        def backward(g):
            if not ctx.need(0):
                return None, None
            k = _expand(_grad_scale(ctx, g, count, x.dtype), x.ndim)
            gx = np.divide(e, s, out=e)                 # softmax; e is not needed afterwards
            if eps:
                gx -= dt(eps / c)
            np.put_along_axis(gx, idx, np.take_along_axis(gx, idx, axis=1) - dt(1 - eps), axis=1)
            gx *= k
            if keep is not None:
                gx *= keep
            return gx, None

        return out, backward

    logp = np.subtract(z, log_s, out=z)
    q = t if not eps else t * dt(1 - eps) + dt(eps / c)
    per = -np.einsum("nc...,nc...->n...", q, logp)
    out = _reduce(ctx, per)

    def backward_probs(g):
        k = _expand(_grad_scale(ctx, g, count, x.dtype), x.ndim)
        gx = gt = None
        if ctx.need(0):
            # d/dx of −Σ q·log softmax(x) = softmax·Σq − q (q need not sum to one)
            gx = np.divide(e, s, out=e)
            gx *= q.sum(axis=1, keepdims=True)
            gx -= q
            gx *= k
        if _need_target(ctx, t):
            gt = logp * (-dt(1 - eps) * k)
        return gx, gt

    return out, backward_probs


@kernel("nll_loss")
def nll_loss(ctx: Ctx, x: np.ndarray, t: np.ndarray):
    c = x.shape[1]
    _check_classes("nll_loss", t, c)
    idx = np.expand_dims(t, 1)
    out = _reduce(ctx, -np.take_along_axis(x, idx, axis=1).squeeze(1))
    count = x.size // c if c else 0

    def backward(g):
        if not ctx.need(0):
            return None, None
        k = _expand(_grad_scale(ctx, g, count, x.dtype), x.ndim)
        gx = np.zeros_like(x)
        np.put_along_axis(gx, idx, -k, axis=1)
        return gx, None

    return out, backward
