"""Attention kernels: batched matmuls over [..., heads, T, d]; no Python loop over batch or heads."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .registry import Ctx, kernel, unbroadcast


@lru_cache(maxsize=32)
def _causal(tq: int, tk: int) -> np.ndarray:
    """True above the diagonal: key j > query i is ignored (top-left aligned, as torch's is_causal)."""
    m = np.triu(np.ones((tq, tk), dtype=bool), 1)
    m.flags.writeable = False
    return m


def masked_softmax(s: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Softmax over the last axis of `s` (overwritten), True in any mask = ignored.

    A row with every position ignored gives zeros (not NaN).
    """
    for m in masks:
        np.copyto(s, -np.inf, where=m)
    mx = s.max(axis=-1, keepdims=True)
    if masks:
        mx[~np.isfinite(mx)] = 0
    np.subtract(s, mx, out=s)
    np.exp(s, out=s)
    tot = s.sum(axis=-1, keepdims=True)
    if masks:
        tot[tot == 0] = 1
    s /= tot
    return s


def softmax_backward(p: np.ndarray, gp: np.ndarray) -> np.ndarray:
    """VJP of softmax over the last axis; overwrites and returns gp."""
    dot = np.einsum("...j,...j->...", gp, p)[..., None]
    gp -= dot
    gp *= p
    return gp


def _sdpa_masks(ctx: Ctx, mask: np.ndarray | None, scores_shape: tuple[int, ...]) -> list[np.ndarray]:
    masks = []
    if ctx.attrs.causal:
        masks.append(_causal(scores_shape[-2], scores_shape[-1]))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.ndim == 2 and len(scores_shape) >= 3:          # key-padding mask [N, Tk]
            m = m.reshape((m.shape[0],) + (1,) * (len(scores_shape) - 2) + (m.shape[1],))
        masks.append(m)
    return masks


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(ctx: Ctx, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                                 mask: np.ndarray | None = None):
    scale = ctx.attrs.scale if ctx.attrs.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    kt = np.swapaxes(k, -1, -2)
    s = q @ kt
    s *= scale
    p = masked_softmax(s, _sdpa_masks(ctx, mask, s.shape))
    out = p @ v

    def backward(gy: np.ndarray):
        gq = gk = gv = None
        if ctx.need(2):
            gv = unbroadcast(np.swapaxes(p, -1, -2) @ gy, v.shape)
        if ctx.need(0) or ctx.need(1):
            gs = softmax_backward(p, gy @ np.swapaxes(v, -1, -2))
            gs *= scale
            if ctx.need(0):
                gq = unbroadcast(gs @ k, q.shape)
            if ctx.need(1):
                gk = unbroadcast(np.swapaxes(gs, -1, -2) @ q, k.shape)
        return gq, gk, gv, None

    return out, backward


@kernel("multi_head_attention")
def multi_head_attention(ctx: Ctx, query: np.ndarray, key: np.ndarray | None, value: np.ndarray | None,
                         key_padding_mask: np.ndarray | None, *params: np.ndarray):
    a = ctx.attrs
    if a.bias:
        w_in, b_in, w_out, b_out = params
    else:
        (w_in, w_out), b_in, b_out = params, None, None
    n, tq, e = query.shape
    h = a.num_heads
    hd = e // h
    scale = 1.0 / math.sqrt(hd)
    dt = query.dtype
    k_in = query if key is None else key
    v_in = k_in if value is None else value
    tk = k_in.shape[1]
    fused = k_in is query and v_in is query                 # self-attention: one GEMM for q, k, v

    def heads(y: np.ndarray, t: int) -> np.ndarray:        # [N*T, E] -> [N, H, T, hd] (a view)
        return y.reshape(n, t, h, hd).transpose(0, 2, 1, 3)

    xq = query.reshape(-1, e)
    if fused:
        qkv = xq @ w_in.T
        if b_in is not None:
            qkv += b_in
        qkv = qkv.reshape(n, tq, 3, h, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        xk = xv = xq
    else:
        xk, xv = k_in.reshape(-1, e), v_in.reshape(-1, e)

        def proj(x: np.ndarray, i: int) -> np.ndarray:
            y = x @ w_in[i * e:(i + 1) * e].T
            if b_in is not None:
                y += b_in[i * e:(i + 1) * e]
            return y

        q = heads(proj(xq, 0), tq)
        if v_in is k_in:
            kv = xk @ w_in[e:].T
            if b_in is not None:
                kv += b_in[e:]
            kv = kv.reshape(n, tk, 2, h, hd).transpose(2, 0, 3, 1, 4)
            k, v = kv[0], kv[1]
        else:
            k, v = heads(proj(xk, 1), tk), heads(proj(xv, 2), tk)
    qs = q * np.asarray(scale, dt)                           # PyTorch scales q before q kᵀ
    s = qs @ k.transpose(0, 1, 3, 2)                         # [N, H, Tq, Tk]
    masks = []
    if a.causal:
        masks.append(_causal(tq, tk))
    if key_padding_mask is not None:
        masks.append(np.asarray(key_padding_mask, dtype=bool)[:, None, None, :])
    p = masked_softmax(s, masks)
    drop = None
    if ctx.training and a.dropout > 0:
        keep = ctx.rng.random(p.shape, dtype=np.float32) >= a.dropout
        drop = keep.astype(dt)
        drop *= np.asarray(1.0 / (1.0 - a.dropout), dt)
        pd = p * drop
    else:
        pd = p
    want_out = ctx.wanted[0] if ctx.wanted else True
    want_w = len(ctx.wanted) > 1 and ctx.wanted[1]
    out = ctx2 = None
    if want_out:
        ctx2 = (pd @ v).transpose(0, 2, 1, 3).reshape(n * tq, e)   # heads concatenated
        out = ctx2 @ w_out.T
        if b_out is not None:
            out += b_out
        out = out.reshape(n, tq, e)
    weights = pd.mean(axis=1) if want_w else None

    def backward(g):
        g_out, g_w = g if isinstance(g, tuple) else (g, None)
        need_in = any(ctx.need(i) for i in (0, 1, 2, 4, 5 if a.bias else 4))
        grads: list = [None] * (4 + len(params))
        iw_out = 6 if a.bias else 5
        gpd = None
        if g_out is not None:
            g2 = g_out.reshape(-1, e)
            if ctx.need(iw_out):
                grads[iw_out] = g2.T @ ctx2
            if a.bias and ctx.need(7):
                grads[7] = g2.sum(axis=0)
            if need_in:
                gctx = heads(g2 @ w_out, tq)                  # [N, H, Tq, hd]
                gpd = gctx @ v.transpose(0, 1, 3, 2)
                gv = pd.transpose(0, 1, 3, 2) @ gctx          # [N, H, Tk, hd]
        if not need_in:
            return tuple(grads)
        if gpd is None:
            gpd = np.zeros_like(p)
            gv = np.zeros((n, h, tk, hd), dt)
        if g_w is not None:
            gpd += (g_w * np.asarray(1.0 / h, dt))[:, None]
        if drop is not None:
            gpd *= drop
        gs = softmax_backward(p, gpd)                          # d loss / d scores
        gq = gs @ k
        gq *= np.asarray(scale, dt)
        gk = gs.transpose(0, 1, 3, 2) @ qs

        def flat(gh: np.ndarray, t: int) -> np.ndarray:        # [N, H, T, hd] -> [N*T, E]
            return gh.transpose(0, 2, 1, 3).reshape(n * t, e)

        gqkv = np.concatenate([flat(gq, tq), flat(gk, tk), flat(gv, tk)], axis=1) if fused else None
        if ctx.need(4):
            if fused:
                grads[4] = gqkv.T @ xq
            else:
                grads[4] = np.concatenate([flat(gq, tq).T @ xq, flat(gk, tk).T @ xk, flat(gv, tk).T @ xv])
        if a.bias and ctx.need(5):
            grads[5] = (gqkv.sum(axis=0) if fused else
                        np.concatenate([gq.sum(axis=(0, 2)).reshape(-1), gk.sum(axis=(0, 2)).reshape(-1),
                                        gv.sum(axis=(0, 2)).reshape(-1)]))
        if fused and key is None and value is None:
            if ctx.need(0):
                grads[0] = (gqkv @ w_in).reshape(query.shape)
        else:
            # an omitted key is the query and an omitted value is the key: their gradients go there
            tgt_k = 1 if key is not None else 0
            tgt_v = 2 if value is not None else tgt_k
            for tgt, gh, t, i in ((0, gq, tq, 0), (tgt_k, gk, tk, 1), (tgt_v, gv, tk, 2)):
                if ctx.need(tgt):
                    gx = flat(gh, t) @ w_in[i * e:(i + 1) * e]
                    grads[tgt] = gx if grads[tgt] is None else grads[tgt] + gx
            for i, arg in enumerate((query, key, value)):
                if grads[i] is not None:
                    grads[i] = grads[i].reshape(arg.shape)
        return tuple(grads)

    return (out, weights), backward


def sinusoid_table(t: int, d: int) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)), float64 [t, d]."""
    pos = np.arange(t, dtype=np.float64)[:, None]
    even = np.arange(0, d, 2, dtype=np.float64)                 # the column index 2i
    angle = pos * np.exp(-math.log(10000.0) * even / d)         # pos / 10000^(2i/d)
    pe = np.empty((t, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d // 2])
    return pe


@lru_cache(maxsize=16)
def _pe(t: int, d: int, dtype: str) -> np.ndarray:
    pe = sinusoid_table(t, d).astype(dtype)
    pe.flags.writeable = False
    return pe


@kernel("positional_encoding")
def positional_encoding(ctx: Ctx, x: np.ndarray):
    t, d = x.shape[1], x.shape[2]
    if t > ctx.attrs.max_len:
        raise ValueError(f"positional_encoding covers at most max_len = {ctx.attrs.max_len} positions, "
                         f"but its input has {t} (shape {x.shape}): raise max_len")
    y = x + _pe(t, d, x.dtype.str)

    def backward(gy: np.ndarray):
        return (gy,)

    return y, backward
