"""Normalisation: batch_norm, layer_norm, dropout, standardize, stochastic_depth."""
from __future__ import annotations

import math
import threading

import numpy as np

from .. import ort_ops, parallel
from .registry import Ctx, fused, kernel


_PIECE = 8 << 20            # bytes per array and piece of batch-norm work (passes over a piece stay in the L3)
_ROW_PIECE = 256 << 10      # the same for training on long rows (_batch_norm_rows: its passes stay in the L2)


class _Channels:
    """Per-channel helpers for an N×C×L view (L = H·W, or 1), written so that NumPy runs long inner loops,
    each large array crosses memory as few times as possible, and the work can split over threads
    (runtime.parallel) without changing a bit.

    Broadcasting a per-channel vector over L costs one ufunc inner-loop call per (n, c) row; repeating it
    to a C·L row instead makes each call cover a whole sample and is about twice as fast. Sums avoid
    BLAS (a threaded GEMV with a vector of ones is fast alone but stalls badly on a busy machine).

    Elementwise work runs in cache-sized pieces (`each`): several whole samples, or when a sample is
    large, a run of whole channels of one sample, so that the passes of one step (centre, then square
    and sum) read a piece from cache. With L ≥ 64 the per-channel sums are per (sample, channel) sums
    (einsum, vecdot over L contiguous values) added over the samples afterwards: each computed the same
    way whichever piece or thread computes it. With small L they are sums over the samples of whole
    columns (`columns`), split over the columns.
    """

    def __init__(self, x: np.ndarray, piece: int | None = None):
        self.n, self.c = x.shape[:2]
        self.l = math.prod(x.shape[2:])
        self.m = self.n * self.l
        self.cl = self.c * self.l
        self.item = x.dtype.itemsize
        sample = self.cl * self.item
        self.piece = piece = piece or _PIECE
        if sample > piece and self.c > 1:
            self.width = self.l * max(1, piece // (self.l * self.item))                # whole channels
        else:
            self.width = self.cl
        self.blocks = -(-self.cl // self.width)
        self.per_row = self.l >= 64

    def flat(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.n, self.cl)

    def row(self, v: np.ndarray) -> np.ndarray:
        return np.repeat(v, self.l) if self.l > 1 else v

    def each(self, fn, arrays: int) -> None:
        """fn(r0, r1, c0, c1) over pieces [r0:r1, c0:c1] of the [N, C·L] arrays (c0, c1 on channel
        boundaries), in parallel (from parallel.SPLIT_ALWAYS bytes over BLAS's thread count); `arrays`:
        how many such arrays fn reads or writes."""
        nbytes = arrays * self.n * self.cl * self.item
        t = parallel.threads_for(nbytes)
        if self.blocks == 1:
            def rows(lo: int, hi: int):
                fn(lo, hi, 0, self.cl)

            parallel.run(rows, self.n, nbytes, max(1, self.piece // max(1, self.cl * self.item)), threads=t)
            return

        def blocks(lo: int, hi: int):
            for i in range(lo, hi):
                r, j = divmod(i, self.blocks)
                fn(r, r + 1, j * self.width, min(self.cl, (j + 1) * self.width))

        parallel.run(blocks, self.n * self.blocks, nbytes, 1, threads=t)

    def columns(self, fn, arrays: int) -> None:
        """fn(c0, c1) over pieces of the C·L columns, in parallel (each piece reads all N rows)."""
        pieces = -(-self.cl // max(64, _PIECE // max(1, self.n * self.item)))
        parallel.run(fn, self.cl, arrays * self.n * self.cl * self.item, -(-self.cl // pieces))

    def piece_sums(self, out: np.ndarray, r0, r1, c0, c1, a2, b2=None) -> None:
        """out[r0:r1, channels of c0:c1] = Σ over L of a (b None) or of a·b, per (sample, channel)."""
        shape, dst = (r1 - r0, (c1 - c0) // self.l, self.l), out[r0:r1, c0 // self.l:c1 // self.l]
        a3 = a2[r0:r1, c0:c1].reshape(shape)
        if b2 is None:
            np.einsum("rcl->rc", a3, out=dst)
        else:
            np.vecdot(a3, b2[r0:r1, c0:c1].reshape(shape), out=dst)

    def sum(self, a2: np.ndarray) -> np.ndarray:
        """Σ a per channel: over the samples column by column, then over L."""
        s = np.empty(self.cl, a2.dtype)

        def part(c0: int, c1: int):
            np.sum(a2[:, c0:c1], axis=0, out=s[c0:c1])

        self.columns(part, 1)
        return np.einsum("cl->c", s.reshape(self.c, self.l)) if self.l > 1 else s

    def dot(self, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
        """Σ a·b per channel (no pieces: for the rarely used gradients in eval mode)."""
        if self.per_row:
            shape = (self.n, self.c, self.l)
            return np.vecdot(a2.reshape(shape), b2.reshape(shape)).sum(axis=0)
        return self.dot_columns(a2, b2)

    def dot_columns(self, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
        """Σ a·b per channel, for small L: over the samples column by column, then over L."""
        s = np.empty(self.cl, np.result_type(a2.dtype, b2.dtype))

        def cols(c0: int, c1: int):
            np.einsum("nk,nk->k", a2[:, c0:c1], b2[:, c0:c1], out=s[c0:c1])

        self.columns(cols, 2)
        return s.reshape(self.c, self.l).sum(axis=1) if self.l > 1 else s


def _update_running(a, running_mean, running_var, nbt, mean, var, m: int) -> None:
    """Running statistics, in place, as PyTorch: momentum (or cumulative average) and unbiased variance."""
    nbt += 1
    mom = a.momentum if a.momentum is not None else 1.0 / float(nbt)
    running_mean *= 1.0 - mom
    running_mean += mom * mean
    running_var *= 1.0 - mom
    running_var += (mom * m / (m - 1)) * var


def _vec(v: np.ndarray, row: np.ndarray | None, c0: int, c1: int, l: int) -> np.ndarray:
    """Per-channel values for channels c0:c1 of an [r, c, L] piece: [c, 1] (broadcast over L) when L
    is long, else the slice of the repeated row as [c, L] (one long inner loop per sample)."""
    return v[c0:c1, None] if row is None else row[c0 * l:c1 * l].reshape(c1 - c0, l)


_KEEP_X_ROWS = 8192         # L from which training keeps x, not x − mean (_batch_norm_rows; measured faster
                            # there, slower in backward at L = 1024 and 3136: docs/benchmarks.md)
_LONG_ROWS = 4096           # L from which per-channel vectors broadcast as [C, 1] rather than repeat to C·L


_local = threading.local()


def _scratch(like: np.ndarray) -> np.ndarray:
    """A per-thread temporary of like's shape and dtype, reused across pieces (fresh allocations of a
    piece's size in two threads at once went through mmap/munmap and serialised the threads)."""
    buf = getattr(_local, "buf", None)
    n = like.size
    if buf is None or buf.size < n or buf.dtype != like.dtype:
        buf = _local.buf = np.empty(n, like.dtype)
    return buf[:n].reshape(like.shape)


def _dot_rows(a3: np.ndarray, b3: np.ndarray, out: np.ndarray, long: bool) -> None:
    """out[r, c] = Σ_l a3[r, c, l]·b3[r, c, l]: einsum on long rows (it lets go of the GIL, so pieces on two
    threads run at once; vecdot holds it), vecdot on short ones (twice as fast as einsum there)."""
    if long:
        np.einsum("rcl,rcl->rc", a3, b3, out=out)
    else:
        np.vecdot(a3, b3, out=out)


def _row_stats(ch: _Channels, x2: np.ndarray, view) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance (float64) of x2 [N, C·L] in one pass: per (sample, channel)
    row its sum and, while the piece is in cache, its squares about the row's own mean; the rows are
    combined exactly (Chan et al.) on the small [N, C] arrays, as accurate as a two-pass variance."""
    l = ch.l
    s1 = np.empty((ch.n, ch.c), x2.dtype)
    q = np.empty((ch.n, ch.c), x2.dtype)

    def stats(r0, r1, c0, c1):
        x3, k0, k1 = view(x2, r0, r1, c0, c1), c0 // l, c1 // l
        np.einsum("rcl->rc", x3, out=s1[r0:r1, k0:k1])
        t = np.subtract(x3, (s1[r0:r1, k0:k1] / x2.dtype.type(l))[:, :, None])
        _dot_rows(t, t, q[r0:r1, k0:k1], l >= _LONG_ROWS)

    ch.each(stats, 1)
    rm = s1.astype(np.float64) / l
    mean = rm.mean(axis=0)
    return mean, (q.sum(axis=0, dtype=np.float64) + l * ((rm - mean) ** 2).sum(axis=0)) / ch.m


def _batch_norm_rows(ctx: Ctx, ch: _Channels, x: np.ndarray, weight, bias, running_mean, running_var, nbt,
                     nparams: int, relu: bool = False):
    """Training batch norm on long rows (L ≥ _KEEP_X_ROWS), or with its forward on onnxruntime
    (runtime/ort_ops.py: float32 with spatial dims), that keeps x, not x − mean, for backward (as
    PyTorch): two passes over x forward (statistics, then y) and two over x and gy backward.

    Σ gy·(x − mean) subtracts the mean piece by piece in cache; y and gx are affine in x per channel
    (x·scale + shift, as PyTorch's CPU kernels). Pieces are L2-sized (_ROW_PIECE): each pass runs
    several ufuncs over one piece.

    relu: the output is relu(batch norm) (runtime/fusion.py), and backward starts from the gradient of
    that output: each piece of gy is masked where the output is 0 (into gx's buffer, read again by the
    second pass), the same bits as ReLU's own backward followed by this one.
    """
    a = ctx.attrs
    n, c, l, m = ch.n, ch.c, ch.l, ch.m
    dt = x.dtype.type
    x2 = ch.flat(x)

    def view(a2, r0, r1, c0, c1):
        return a2[r0:r1, c0:c1].reshape(r1 - r0, (c1 - c0) // l, l)

    y = None
    if ort_ops.batch_norm_applies(x):                   # y and the statistics in two threaded passes
        y, mean, var = ort_ops.batch_norm_train(x, weight, bias, a.eps, relu)
        var64 = var.astype(np.float64)
        y = ch.flat(y)
    else:
        mean64, var64 = _row_stats(ch, x2, view)
        mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
    inv = (1.0 / np.sqrt(var64 + a.eps)).astype(x.dtype)
    scale = inv * weight if weight is not None else inv
    shift = -mean * scale                               # y = x·scale + shift, as PyTorch's CPU kernel
    if bias is not None:
        shift += bias
    long = l >= _LONG_ROWS
    mrow, srow, hrow = (None,) * 3 if long else (ch.row(mean), ch.row(scale), ch.row(shift))
    if y is None:
        y = np.empty(x2.shape, x.dtype)

        def normalise(r0, r1, c0, c1):
            k0, k1 = c0 // l, c1 // l
            y3 = np.multiply(view(x2, r0, r1, c0, c1), _vec(scale, srow, k0, k1, l),
                             out=view(y, r0, r1, c0, c1))
            y3 += _vec(shift, hrow, k0, k1, l)
            if relu:
                np.maximum(y3, 0, out=y3)

        ch.each(normalise, 2)
    _update_running(a, running_mean, running_var, nbt, mean, var, m)

    def backward(gy: np.ndarray):
        g2 = ch.flat(gy)
        sums = np.empty((2, n, c), x.dtype)
        gx = np.empty(g2.shape, x.dtype) if ctx.need(0) or relu else None
        if relu:
            g2 = gx                                     # the masked gradient, written piece by piece below

        def grad_stats(r0, r1, c0, c1):                 # Σ gy and Σ gy·(x − mean) per (sample, channel)
            k0, k1, g3 = c0 // l, c1 // l, view(g2, r0, r1, c0, c1)
            if relu:
                np.multiply(view(ch.flat(gy), r0, r1, c0, c1), view(y, r0, r1, c0, c1) > 0, out=g3)
            np.einsum("rcl->rc", g3, out=sums[0, r0:r1, k0:k1])
            t = np.subtract(view(x2, r0, r1, c0, c1), _vec(mean, mrow, k0, k1, l))
            _dot_rows(g3, t, sums[1, r0:r1, k0:k1], long)

        ch.each(grad_stats, 2)
        gb, gxc = sums.sum(axis=1)
        gw = gxc * inv if weight is not None and ctx.need(1) else None
        if ctx.need(0):
            # gx = s·(gy − Σgy/M − x̂·Σ(gy·x̂)/M) with s = weight·inv, as s·gy + k·x + h
            k = -scale * inv * inv * gxc / dt(m)
            h = -scale * gb / dt(m) - k * mean
            krow, hrow2 = (None, None) if long else (ch.row(k), ch.row(h))

            def grad(r0, r1, c0, c1):
                k0, k1, g3 = c0 // l, c1 // l, view(g2, r0, r1, c0, c1)
                gs = np.multiply(g3, _vec(scale, srow, k0, k1, l), out=_scratch(g3))  # before gx's piece is written
                t = np.multiply(view(x2, r0, r1, c0, c1), _vec(k, krow, k0, k1, l), out=view(gx, r0, r1, c0, c1))
                t += _vec(h, hrow2, k0, k1, l)
                t += gs

            ch.each(grad, 3)
            gx = gx.reshape(x.shape)
        else:
            gx = None
        if weight is None:
            return (gx,) + (None,) * nparams
        return (gx, gw, gb if ctx.need(2) else None) + (None,) * (nparams - 2)

    return y.reshape(x.shape), backward


def _train_rows(ctx: Ctx, x: np.ndarray, p: tuple, relu: bool):
    """Training batch norm by _batch_norm_rows where it applies (long rows, or its forward on onnxruntime),
    else None (eval mode too); a batch with one value per channel is refused."""
    if not ctx.training:
        return None
    l = math.prod(x.shape[2:])
    if x.shape[0] * l < 2:
        raise ValueError(f"batch_norm needs more than one value per channel in training, "
                         f"got input of shape {'×'.join(map(str, x.shape))}")
    if l < _KEEP_X_ROWS and not ort_ops.batch_norm_applies(x):
        return None
    if ctx.attrs.affine:
        weight, bias, running_mean, running_var, nbt = p
    else:
        (running_mean, running_var, nbt), weight, bias = p, None, None
    return _batch_norm_rows(ctx, _Channels(x, _ROW_PIECE), x, weight, bias, running_mean, running_var, nbt,
                            len(p), relu)


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
        rows = _train_rows(ctx, x, p, relu=False)
        if rows is not None:
            return rows
        mean = ch.sum(x2) / dt(m)
        mrow = ch.row(mean)
        xc = np.empty(x2.shape, np.result_type(x2.dtype, mrow.dtype))     # kept for backward: x̂ = xc·inv
        sq = np.empty((ch.n, ch.c), xc.dtype) if ch.per_row else None

        def centre(r0, r1, c0, c1):                # and Σ xc² per (sample, channel) while in cache
            np.subtract(x2[r0:r1, c0:c1], mrow[c0:c1], out=xc[r0:r1, c0:c1])
            if sq is not None:
                ch.piece_sums(sq, r0, r1, c0, c1, xc, xc)

        ch.each(centre, 2)
        # biased: used to normalise (two-pass, accurate)
        var = (sq.sum(axis=0) if sq is not None else ch.dot_columns(xc, xc)) / dt(m)
        inv = 1.0 / np.sqrt(var + eps)
        scale = inv * weight if weight is not None else inv
        srow = ch.row(scale)
        brow = ch.row(bias) if bias is not None else None
        y = np.empty(xc.shape, np.result_type(xc.dtype, srow.dtype))

        def normalise(r0, r1, c0, c1):
            yb = np.multiply(xc[r0:r1, c0:c1], srow[c0:c1], out=y[r0:r1, c0:c1])
            if brow is not None:
                yb += brow[c0:c1]

        ch.each(normalise, 2)
        _update_running(a, running_mean, running_var, nbt, mean, var, m)

        def backward(gy: np.ndarray):
            g2 = ch.flat(gy)
            if ch.per_row:                         # Σ gy and Σ gy·xc in one pass over gy and xc
                sums = np.empty((2, ch.n, ch.c), np.result_type(g2.dtype, xc.dtype))

                def stats(r0, r1, c0, c1):
                    ch.piece_sums(sums[0], r0, r1, c0, c1, g2)
                    ch.piece_sums(sums[1], r0, r1, c0, c1, g2, xc)

                ch.each(stats, 2)
                gb, gxc = sums.sum(axis=1)
            else:
                gb, gxc = ch.sum(g2), ch.dot_columns(g2, xc)
            # gxc = Σ gy·xc ; Σ gy·x̂ = gxc·inv
            gw = gxc * inv if weight is not None and ctx.need(1) else None
            gx = None
            if ctx.need(0):
                # gx = s·(gy − Σgy/M − x̂·Σ(gy·x̂)/M) with s = weight·inv, as s·gy + k·xc + h
                krow = ch.row(-scale * inv * inv * gxc / dt(m))
                hrow = ch.row(-scale * gb / dt(m))
                gx = np.empty(g2.shape, np.result_type(g2.dtype, srow.dtype))

                def grad(r0, r1, c0, c1):
                    gxb = np.multiply(g2[r0:r1, c0:c1], srow[c0:c1], out=gx[r0:r1, c0:c1])
                    t = xc[r0:r1, c0:c1]           # xc is not needed after this backward
                    t *= krow[c0:c1]
                    t += hrow[c0:c1]
                    gxb += t

                ch.each(grad, 3)
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
    srow, hrow = ch.row(scale), ch.row(shift)
    y = np.empty(x2.shape, np.result_type(x2.dtype, srow.dtype))

    def affine(r0, r1, c0, c1):
        yb = np.multiply(x2[r0:r1, c0:c1], srow[c0:c1], out=y[r0:r1, c0:c1])
        yb += hrow[c0:c1]

    ch.each(affine, 2)

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
    if a.dim is None or a.dim % x.ndim == x.ndim - 1:
        ns = a.normalized_shape
        return _layer_norm_last(ctx, x, weight, bias, 1 if ns is None or isinstance(ns, int) else len(ns))
    # one inner dimension (channels-first, LayerNorm2d): normalise it as the last one, and move it back
    d = a.dim % x.ndim
    y, bwd = _layer_norm_last(ctx, np.ascontiguousarray(np.moveaxis(x, d, -1)), weight, bias, 1)

    def backward(gy: np.ndarray):
        gx, gw, gb = bwd(np.ascontiguousarray(np.moveaxis(gy, d, -1)))
        return (None if gx is None else np.ascontiguousarray(np.moveaxis(gx, -1, d))), gw, gb

    return np.ascontiguousarray(np.moveaxis(y, -1, d)), backward


def _layer_norm_last(ctx: Ctx, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, k: int):
    """Layer norm over the last k dimensions of x (forward, and its backward)."""
    a = ctx.attrs
    if not any(ctx.needs) and ort_ops.layer_norm_applies(x, k):   # no gradient wanted: onnxruntime's kernel
        return ort_ops.layer_norm(x, weight, bias, a.eps, k), None
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


@kernel("stochastic_depth")
def stochastic_depth(ctx: Ctx, x: np.ndarray):
    """torchvision's stochastic_depth: one keep-or-drop draw per row (mode row) or per call (mode batch)."""
    p = float(ctx.attrs.p)
    if not ctx.training or p == 0.0:
        return x, lambda gy: (gy,)
    size = (x.shape[0],) + (1,) * (x.ndim - 1) if ctx.attrs.mode == "row" else (1,) * x.ndim
    mask = (ctx.rng.random(size) >= p).astype(x.dtype)
    if p < 1.0:
        mask *= x.dtype.type(1.0 / (1.0 - p))
    y = x * mask

    def backward(gy: np.ndarray):
        return (gy * mask if ctx.need(0) else None,)

    return y, backward


@fused("batch_norm", "relu")
def batch_norm_relu(ctx: Ctx, x: np.ndarray, *p: np.ndarray):
    """relu(batch_norm(x)) in training (runtime/fusion.py): on long rows or onnxruntime, ReLU inside batch
    norm's passes (_batch_norm_rows); otherwise the two kernels, ReLU in place on batch norm's output
    (which its backward does not read) and its mask applied before batch norm's backward."""
    rows = _train_rows(ctx, x, p, relu=True)
    if rows is not None:
        return rows
    y, back = batch_norm(ctx, x, *p)
    np.maximum(y, 0, out=y)

    def backward(gy: np.ndarray):
        return back(np.multiply(gy, y > 0))

    return y, backward
