"""Attention kernels: batched matmuls over [..., heads, T, d]; no Python loop over batch or heads."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from compiler.ops.attention import sinusoid_table

from .. import ort_ops, threads
from .registry import Ctx, kernel, unbroadcast


@lru_cache(maxsize=32)
def _causal(tq: int, tk: int) -> np.ndarray:
    """True above the diagonal: key j > query i is ignored (top-left aligned, as torch's is_causal)."""
    m = np.triu(np.ones((tq, tk), dtype=bool), 1)
    m.flags.writeable = False
    return m


def row_max(s: np.ndarray) -> np.ndarray:
    """Max over the last axis (keepdims) by pairwise folding: faster than ndarray.max on short rows."""
    m = s
    while m.shape[-1] > 1:
        n = m.shape[-1]
        half = n // 2
        t = np.maximum(m[..., :half], m[..., half:2 * half])
        if n % 2:
            np.maximum(t[..., :1], m[..., 2 * half:], out=t[..., :1])
        m = t
    return m if m is not s else m.copy()


def masked_softmax(s: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Softmax over the last axis of `s` (overwritten), True in any mask = ignored.

    A row with every position ignored gives zeros (not NaN).
    """
    for m in masks:
        np.copyto(s, -np.inf, where=m)
    mx = row_max(s)
    if masks:
        mx[mx == -np.inf] = 0
    np.subtract(s, mx, out=s)
    np.exp(s, out=s)
    tot = s @ np.ones((s.shape[-1], 1), s.dtype)            # row sums as a GEMV: faster than sum()
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


def _under_policy(run, work: int):
    """run() (a kernel's forward: (y, backward)) with forward and backward in one BLAS-thread region
    sized by the kernel's largest GEMM, `work` = m·k·n (runtime.threads: one thread when small)."""
    with threads.gemm(work, 1, 1):
        y, bwd = run()

    def backward(g):
        with threads.gemm(work, 1, 1):
            return bwd(g)

    return y, backward


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(ctx: Ctx, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                                 mask: np.ndarray | None = None):
    rows = max(math.prod(q.shape[:-1]), math.prod(k.shape[:-2]) * q.shape[-2])      # batch·Tq
    work = rows * k.shape[-2] * max(q.shape[-1], v.shape[-1])
    return _under_policy(lambda: _sdpa(ctx, q, k, v, mask), work)


def _sdpa(ctx: Ctx, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None):
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
    n, tq, e = query.shape
    tk = (query if key is None else key).shape[1]
    work = n * max(tq, tk) * e * max(3 * e, tk)             # the projections', or the scores' GEMMs
    return _under_policy(lambda: _mha(ctx, query, key, value, key_padding_mask, *params), work)


def _mha(ctx: Ctx, query: np.ndarray, key: np.ndarray | None, value: np.ndarray | None,
         key_padding_mask: np.ndarray | None, *params: np.ndarray):
    a = ctx.attrs
    if a.bias:
        w_in, b_in, w_out, b_out = params
    else:
        (w_in, w_out), b_in, b_out = params, None, None
    n, tq, e = query.shape
    h = a.num_heads
    hd = e // h
    dt = query.dtype
    scale = np.asarray(1.0 / math.sqrt(hd), dt)
    k_in = query if key is None else key
    v_in = k_in if value is None else value
    tk = k_in.shape[1]
    fused = k_in is query and v_in is query                 # self-attention: one GEMM for q, k and v
    want_out = ctx.wanted[0] if ctx.wanted else True
    want_w = len(ctx.wanted) > 1 and ctx.wanted[1]
    if (fused and key_padding_mask is None and want_out and not want_w and not any(ctx.needs)
            and ort_ops.attention_applies(query, h)):
        # inference without gradients or weights: onnxruntime's fused attention (runtime/ort_ops.py)
        return (ort_ops.attention(query, w_in, b_in, w_out, b_out, h, a.causal), None), None

    def heads(y: np.ndarray, t: int, parts: int = 1):
        """[N*T, parts*E] -> parts views [N, H, T, hd] (no copy)."""
        y = y.reshape(n, t, parts, h, hd).transpose(2, 0, 3, 1, 4)
        return y if parts > 1 else y[0]

    def proj(x: np.ndarray, lo: int, hi: int) -> np.ndarray:   # rows lo:hi of the stacked projection
        y = x.reshape(-1, e) @ w_in[lo * e:hi * e].T
        if b_in is not None:
            y += b_in[lo * e:hi * e]
        return y

    if fused:
        q, k, v = heads(proj(query, 0, 3), tq, 3)
    else:
        q = heads(proj(query, 0, 1), tq)
        if v_in is k_in:
            k, v = heads(proj(k_in, 1, 3), tk, 2)
        else:
            k, v = heads(proj(k_in, 1, 2), tk), heads(proj(v_in, 2, 3), tk)
    qs = q * scale                                           # PyTorch scales q before q kᵀ
    s = qs @ k.transpose(0, 1, 3, 2)                         # [N, H, Tq, Tk]
    masks = []
    if a.causal:
        masks.append(_causal(tq, tk))
    if key_padding_mask is not None:
        masks.append(np.asarray(key_padding_mask, dtype=bool)[:, None, None, :])
    p = masked_softmax(s, masks)
    drop = None
    pd = p
    if ctx.training and a.dropout > 0:
        drop = (ctx.rng.random(p.shape, dtype=np.float32) >= a.dropout).astype(dt)
        drop *= np.asarray(1.0 / (1.0 - a.dropout), dt)
        pd = p * drop
    out = att = None
    if want_out:
        att = np.empty((n, tq, h, hd), dt)                   # heads side by side: [N*Tq, E]
        np.matmul(pd, v, out=att.transpose(0, 2, 1, 3))
        att = att.reshape(n * tq, e)
        out = att @ w_out.T
        if b_out is not None:
            out += b_out
        out = out.reshape(n, tq, e)
    weights = pd.mean(axis=1) if want_w else None

    i_wo = 6 if a.bias else 5                                # argument index of out_proj.weight

    def backward(g):
        g_out, g_w = g if isinstance(g, tuple) else (g, None)
        grads: list = [None] * (4 + len(params))
        if g_out is not None:
            g2 = g_out.reshape(-1, e)
            if ctx.need(i_wo):
                grads[i_wo] = g2.T @ att
            if a.bias and ctx.need(7):
                grads[7] = g2.sum(axis=0)
        if not any(ctx.need(i) for i in ((0, 1, 2, 4, 5) if a.bias else (0, 1, 2, 4))):
            return tuple(grads)
        # gradients of the projected q, k, v, written straight into one [N, T, parts, H, hd] buffer
        if fused:
            buf = np.empty((n, tq, 3, h, hd), dt)
            gq, gk, gv = (buf[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        else:
            bq, bk, bv = np.empty((n, tq, h, hd), dt), np.empty((n, tk, h, hd), dt), np.empty((n, tk, h, hd), dt)
            gq, gk, gv = (b.transpose(0, 2, 1, 3) for b in (bq, bk, bv))
        if g_out is not None:
            gctx = heads(g_out.reshape(-1, e) @ w_out, tq)   # [N, H, Tq, hd]
            np.matmul(pd.transpose(0, 1, 3, 2), gctx, out=gv)
            gpd = gctx @ v.transpose(0, 1, 3, 2)
        else:
            gv[...] = 0
            gpd = np.zeros_like(p)
        if g_w is not None:
            gpd += (g_w * np.asarray(1.0 / h, dt))[:, None]
        if drop is not None:
            gpd *= drop
        gs = softmax_backward(p, gpd)                        # d loss / d scores
        np.matmul(gs, k, out=gq)
        gq *= scale
        np.matmul(gs.transpose(0, 1, 3, 2), qs, out=gk)
        if fused:
            gqkv = buf.reshape(n * tq, 3 * e)
            if ctx.need(4):
                grads[4] = gqkv.T @ query.reshape(-1, e)
            if a.bias and ctx.need(5):
                grads[5] = gqkv.sum(axis=0)
        else:
            flats = [b.reshape(-1, e) for b in (bq, bk, bv)]
            xs = [query.reshape(-1, e), k_in.reshape(-1, e), v_in.reshape(-1, e)]
            if ctx.need(4):
                grads[4] = np.concatenate([f.T @ x for f, x in zip(flats, xs)])
            if a.bias and ctx.need(5):
                grads[5] = np.concatenate([f.sum(axis=0) for f in flats])
        if fused and key is None and value is None:
            if ctx.need(0):
                grads[0] = (gqkv @ w_in).reshape(query.shape)
            return tuple(grads)
        # an omitted key is the query and an omitted value is the key: their gradients go there
        tgt_k = 1 if key is not None else 0
        tgt_v = 2 if value is not None else tgt_k
        parts = ([gqkv[:, i * e:(i + 1) * e] for i in range(3)] if fused else flats)
        for tgt, gp_, i in ((0, parts[0], 0), (tgt_k, parts[1], 1), (tgt_v, parts[2], 2)):
            if ctx.need(tgt):
                gx = gp_ @ w_in[i * e:(i + 1) * e]
                grads[tgt] = gx if grads[tgt] is None else grads[tgt] + gx
        for i, arg in enumerate((query, key, value)):
            if grads[i] is not None:
                grads[i] = grads[i].reshape(arg.shape)
        return tuple(grads)

    return (out, weights), backward


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
