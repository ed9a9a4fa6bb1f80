"""Generative-model helpers: the VAE reparameterisation and its KL term."""
from __future__ import annotations

import numpy as np

from .registry import Ctx, kernel, unbroadcast


@kernel("reparameterize")
def reparameterize(ctx: Ctx, mu: np.ndarray, logvar: np.ndarray):
    shape = np.broadcast_shapes(mu.shape, logvar.shape)
    if not ctx.training:
        z = mu if mu.shape == shape else np.broadcast_to(mu, shape).copy()

        def backward_eval(gz):
            gmu = unbroadcast(gz, mu.shape) if ctx.need(0) else None
            return gmu, (np.zeros_like(logvar) if ctx.need(1) else None)
        return z, backward_eval

    dtype = np.result_type(mu, logvar)
    noise = ctx.rng.standard_normal(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
    std = np.asarray(np.multiply(logvar, 0.5))      # an array even for rank 0 (ufuncs give scalars there)
    np.exp(std, out=std)
    noise *= std                             # eps · σ: all that backward needs
    del std
    z = np.asarray(np.add(mu, noise))

    def backward(gz):
        gmu = unbroadcast(gz, mu.shape) if ctx.need(0) else None
        glv = None
        if ctx.need(1):                      # dz/dlogvar = eps · σ / 2
            glv = unbroadcast(gz * noise * 0.5, logvar.shape)
        return gmu, glv
    return z, backward


@kernel("kl_normal")
def kl_normal(ctx: Ctx, mu: np.ndarray, logvar: np.ndarray):
    reduction = ctx.attrs.reduction
    ev = np.exp(logvar)
    term = ev - 1 - logvar + np.square(mu)   # broadcasts when mu and logvar differ
    n = term.shape[0]
    per = term.reshape(n, -1).sum(axis=1)
    per *= 0.5
    if reduction == "mean":
        out = np.asarray(per.mean(), dtype=per.dtype)
    elif reduction == "sum":
        out = np.asarray(per.sum(), dtype=per.dtype)
    else:
        out = per

    def backward(gy):
        g = np.asarray(gy, dtype=per.dtype)
        if reduction == "mean":
            g = g / n
        g = np.broadcast_to(g, (n,)).reshape((n,) + (1,) * (term.ndim - 1))
        full = term.shape                                                   # a broadcast input counts once per copy
        gmu = unbroadcast(np.broadcast_to(g * mu, full), mu.shape) if ctx.need(0) else None   # d/dmu = mu
        glv = None
        if ctx.need(1):                                                     # d/dlogvar = (exp(logvar) − 1) / 2
            glv = unbroadcast(np.broadcast_to(g * (0.5 * (ev - 1)), full), logvar.shape)
        return gmu, glv
    return out, backward
