"""Convolution and pooling kernels.

Every convolution runs on three primitives over NCHW arrays (conv1d is conv2d with H = 1):
  _corr   the forward correlation: im2col as a strided window view, copied block by block of samples
          into a column matrix (_Columns), and one GEMM per block or per sample; a 1×1 stride-1 conv
          is a plain GEMM on the input itself;
  _wgrad  the weight gradient: the same columns (kept from the forward pass when the batch is one
          block, else rebuilt block by block) times the output gradient;
  _igrad  the input gradient: for stride 1 a correlation of the padded output gradient with the
          flipped kernel, otherwise (or when the output has many more channels than the input) a
          GEMM to columns and a col2im that loops over the kh·kw kernel offsets only.
conv_transpose2d is conv2d with forward and input gradient swapped. Blocks keep each column matrix
around _BLOCK bytes, so that it is still in cache when the GEMM reads it.
Pooling is separable (rows, then columns) and loops over the kernel offsets only; bilinear
upsampling loops over the scale phases only.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.ops.convolution import (adaptive_windows, conv_out, conv_pads, pool_geometry,
                                      transpose_base, transpose_output_padding, tup)

from .registry import Ctx, kernel

_BLOCK = 4 << 20            # bytes of im2col columns per block of samples (cache-sized, yet big 2-thread GEMMs)


# -- primitives -------------------------------------------------------------------------------------

def _pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    """x padded on its trailing len(pads) dims by (before, after) amounts; negative amounts crop."""
    nd = len(pads)
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    lead = x.ndim - nd
    src = [slice(None)] * lead
    dst = [slice(None)] * lead
    shape = list(x.shape[:lead])
    for (lo, hi), n in zip(pads, x.shape[lead:]):
        size = n + lo + hi
        shape.append(size)
        src.append(slice(max(0, -lo), n - max(0, -hi)))
        dst.append(slice(max(0, lo), size - max(0, hi)))
    if all(lo <= 0 and hi <= 0 for lo, hi in pads):
        return x[tuple(src)]
    out = np.full(shape, value, x.dtype) if value else np.zeros(shape, x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _windows(xp: np.ndarray, k, s, d, out) -> np.ndarray:
    """Read-only view [N, C, kh, kw, oh, ow] of the kernel windows of a padded NCHW array."""
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, xp.shape[:2] + tuple(k) + tuple(out),
                      (sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]), writeable=False)


_MIN_COLS = 512             # GEMM columns per block, at least (small images: several samples per block)
_SAMPLE_COLS = 1024         # from this many columns per sample, one GEMM per sample (no output transpose)
_WIDE = 1.1                 # stride-1 columns run over the padded width while it wastes at most 10%
_WIDE_ROWS = 256            # ... or while the column matrix has at most this many rows


def _blocks(n: int, per_sample: int, cols: int = _MIN_COLS):
    nb = max(1, min(n, max(_BLOCK // max(per_sample, 1), -(-_MIN_COLS // max(cols, 1)))))
    return [(i, min(n, i + nb)) for i in range(0, n, nb)]


def _is_plain_gemm(k, s, xp_sp, out) -> bool:
    return tuple(k) == (1, 1) and tuple(s) == (1, 1) and tuple(xp_sp) == tuple(out)


class _Columns:
    """im2col of a padded NCHW input, block by block of samples.

    Layout: per sample (cols [m, C·kh·kw, R], one GEMM per sample whose output is already NCHW) when
    a sample has many columns, else folded over the block's samples (cols [C·kh·kw, m·R], one GEMM per
    block, output transposed back).
    Wide columns run over whole rows of the input (R = oh·Wq, position p·Wq + q; q >= ow are junk
    positions the caller drops), so that every (channel, kernel offset) row of a sample is one
    contiguous run of memory: a fast copy. With stride 1 the rows are the padded input's (Wq = Wp);
    with a larger stride (and dilation 1) the input is first split into its stride phases
    xp[:, :, a::sh, b::sw] (one pass), and a kernel offset (i, j) reads phase (i mod sh, j mod sw)
    from row i // sh, column j // sw with stride 1 (Wq = ⌈Wp / sw⌉). Exact columns (R = oh·ow,
    strided gathers) are used when the junk would cost more than the fast copy saves.
    """

    def __init__(self, xp: np.ndarray, k, s, d, out, dtype):
        n, c = xp.shape[:2]
        oh, ow = out
        s, d = tuple(s), tuple(d)
        self.shape = (c, k[0], k[1])
        self.rows = c * k[0] * k[1]
        if s == (1, 1):
            wq = xp.shape[3]
        elif d == (1, 1):
            wq = -(-xp.shape[3] // s[1])
        else:
            wq = None
        # wide columns also compute the junk positions: worth it while the junk is small, or while
        # the GEMM is cheap anyway (few rows)
        self.wide = wq is not None and (wq <= _WIDE * ow or self.rows <= _WIDE_ROWS)
        self._src = (xp, tuple(k), s, d, out)
        self._parts: list | None = None
        self.grid = (oh, wq) if self.wide else (oh, ow)
        self.t = (oh - 1) * wq + ow if self.wide else oh * ow     # wide: positions read, all in bounds
        self.r = self.grid[0] * self.grid[1]
        self.per_sample = self.r >= _SAMPLE_COLS
        self.dtype = dtype
        self.blocks = _blocks(n, self.rows * self.r * np.dtype(dtype).itemsize, self.r)

    def parts(self) -> list:
        """(kernel rows, kernel columns, source view) triples to copy; built on first use."""
        if self._parts is not None:
            return self._parts
        xp, k, s, d, out = self._src
        n, c = xp.shape[:2]
        parts = []
        if not self.wide:
            parts.append((slice(None), slice(None), _windows(xp, k, s, d, out)))
        elif s == (1, 1):
            if xp.strides[3] != xp.itemsize or (xp.shape[2] > 1 and xp.strides[2] != xp.shape[3] * xp.itemsize):
                xp = np.ascontiguousarray(xp)           # rows must follow each other in memory
            sn, sc, sh, sw = xp.strides
            parts.append((slice(None), slice(None), as_strided(
                xp, (n, c, k[0], k[1], self.t), (sn, sc, sh * d[0], sw * d[1], sw), writeable=False)))
        else:
            hq, wq = -(-xp.shape[2] // s[0]), self.grid[1]
            pa, pb = min(s[0], k[0]), min(s[1], k[1])              # the phases some kernel offset reads
            phases = np.zeros((pa, pb, n, c, hq, wq), xp.dtype)
            for a in range(pa):
                for b in range(pb):
                    src = xp[:, :, a::s[0], b::s[1]]
                    ph = phases[a, b]
                    ph[:, :, :src.shape[2], :src.shape[3]] = src
                    sn, sc, sh, sw = ph.strides
                    ka, kb = len(range(a, k[0], s[0])), len(range(b, k[1], s[1]))
                    parts.append((slice(a, None, s[0]), slice(b, None, s[1]), as_strided(
                        ph, (n, c, ka, kb, self.t), (sn, sc, sh, sw, sw), writeable=False)))
        self._parts = parts
        return parts

    def __iter__(self):
        """Yield (n0, n1, cols): [m, C·kh·kw, R] per sample, or [C·kh·kw, m·R] folded (m = n1 − n0)."""
        parts = self.parts()
        buf = None
        for n0, n1 in self.blocks:
            m = n1 - n0
            shape = (m,) + self.shape + (self.r,) if self.per_sample else self.shape + (m, self.r)
            if buf is None or buf.shape != shape:
                # the junk tail of each wide row is never written: zero it once per buffer
                buf = (np.zeros if self.wide else np.empty)(shape, self.dtype)
            for si, sj, view in parts:
                src = view[n0:n1]
                if self.per_sample:
                    dst = buf[:, :, si, sj]
                else:
                    dst = buf[:, si, sj]
                    src = src.transpose((1, 2, 3, 0) + tuple(range(4, src.ndim)))
                if self.wide:
                    np.copyto(dst[..., :self.t], src)
                else:
                    np.copyto(dst.reshape(dst.shape[:-1] + self.grid), src)
            yield n0, n1, buf.reshape((m, self.rows, self.r) if self.per_sample else (self.rows, m * self.r))


def _corr(xp: np.ndarray, w: np.ndarray, s, d, groups: int, out, keep: bool = False):
    """Cross-correlation of padded xp [N, C, Hp, Wp] with w [O, C/g, kh, kw]: y [N, O, *out].
    With keep, also returns the columns when the batch is one block (else None) for _wgrad."""
    n, c = xp.shape[:2]
    o, cg, kh, kw = w.shape
    g, og = groups, o // groups
    kk = cg * kh * kw
    oh, ow = out
    dt = np.result_type(xp.dtype, w.dtype)
    wm = w.reshape(g, og, kk)
    if _is_plain_gemm((kh, kw), s, xp.shape[2:], out):
        y = np.matmul(wm, xp.reshape(n, g, cg, oh * ow)).reshape(n, o, oh, ow)
        return (y, None) if keep else y
    y = np.empty((n, o, oh, ow), dt)
    cols = _Columns(xp, (kh, kw), s, d, out, dt)
    last = None
    for n0, n1, last in cols:
        m = n1 - n0
        if not cols.per_sample:
            yc = np.matmul(wm, last.reshape(g, kk, -1))                      # [g, og, m·R]
            y[n0:n1] = yc.reshape((o, m) + cols.grid)[..., :ow].transpose(1, 0, 2, 3)
        elif cols.wide and cols.grid[1] != ow:
            yc = np.matmul(wm, last.reshape(m, g, kk, -1))                   # [m, g, og, R]
            y[n0:n1] = yc.reshape((m, o) + cols.grid)[..., :ow]
        else:
            np.matmul(wm, last.reshape(m, g, kk, -1), out=y[n0:n1].reshape(m, g, og, -1))
    if keep:
        return y, (last if len(cols.blocks) == 1 else None)
    return y


def _wgrad(xp: np.ndarray, gy: np.ndarray, k, s, d, groups: int, kept: np.ndarray | None = None) -> np.ndarray:
    """Gradient of _corr's weight: [O, C/g, kh, kw]; `kept` are _corr's columns if it kept them."""
    n, c = xp.shape[:2]
    o, (oh, ow) = gy.shape[1], gy.shape[2:]
    g, og, cg = groups, o // groups, c // groups
    kk = cg * k[0] * k[1]
    dt = np.result_type(xp.dtype, gy.dtype)
    if _is_plain_gemm(k, s, xp.shape[2:], (oh, ow)):
        gw = np.matmul(gy.reshape(n, g, og, oh * ow), xp.reshape(n, g, cg, oh * ow).swapaxes(-1, -2)).sum(0)
        return gw.reshape(o, cg, *k)
    cols = _Columns(xp, k, s, d, (oh, ow), dt)
    gw = np.zeros((g, og, kk), dt)
    gyc = None
    for n0, n1, cm in ([(0, n, kept)] if kept is not None else cols):
        m = n1 - n0
        if cols.grid[1] != ow:                                  # wide columns: zero gradient at junk positions
            shape = (m, o) + cols.grid if cols.per_sample else (o, m) + cols.grid
            if gyc is None or gyc.shape != shape:
                gyc = np.zeros(shape, dt)
            gyc[..., :ow] = gy[n0:n1] if cols.per_sample else gy[n0:n1].transpose(1, 0, 2, 3)
            g2 = gyc
        else:
            g2 = gy[n0:n1] if cols.per_sample else gy[n0:n1].transpose(1, 0, 2, 3)
        if cols.per_sample:
            gw += np.matmul(g2.reshape(m, g, og, -1), cm.reshape(m, g, kk, -1).swapaxes(-1, -2)).sum(0)
        else:
            gw += np.matmul(g2.reshape(g, og, -1), cm.reshape(g, kk, -1).swapaxes(-1, -2))
    return gw.reshape(o, cg, *k)


def _igrad(gy: np.ndarray, w: np.ndarray, s, d, groups: int, full, lo, out) -> np.ndarray:
    """Gradient of _corr's input: the region [lo, lo + out) of the gradient of a padded input of size `full`."""
    n, o, oh, ow = gy.shape
    _, cg, kh, kw = w.shape
    g, og = groups, o // groups
    c = g * cg
    if tuple(s) == (1, 1) and o * out[0] * (out[1] + d[1] * (kw - 1)) <= 3 * c * oh * ow:
        # correlation of the padded output gradient with the flipped, in/out-swapped kernel
        # (cheaper than GEMM + col2im unless the gradient has many more channels than the input)
        wf = w.reshape(g, og, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(c, og, kh, kw)[:, :, ::-1, ::-1]
        pads = []
        for k_, d_, l_, o_, m in zip((kh, kw), d, lo, out, (oh, ow)):
            before = d_ * (k_ - 1) - l_
            pads.append((before, o_ + d_ * (k_ - 1) - m - before))
        return _corr(_pad(gy, pads), wf, (1, 1), d, g, out)
    dt = np.result_type(gy.dtype, w.dtype)
    size = [max(f, l_ + o_) for f, l_, o_ in zip(full, lo, out)]
    gxp = np.zeros((n, c) + tuple(size), dt)
    wt = w.reshape(g, og, cg * kh * kw).swapaxes(1, 2)                   # [g, C/g·kh·kw, O/g]
    blocks = _blocks(n, c * kh * kw * oh * ow * np.dtype(dt).itemsize, oh * ow)
    ends = (s[0] * (oh - 1) + 1, s[1] * (ow - 1) + 1)
    for n0, n1 in blocks:
        gyc = gy[n0:n1].reshape(n1 - n0, g, og, oh * ow).transpose(1, 2, 0, 3).reshape(g, og, -1)
        cols = np.matmul(wt, gyc).reshape(c, kh, kw, n1 - n0, oh, ow)
        dst = gxp[n0:n1].transpose(1, 0, 2, 3)                          # [C, nb, H, W]
        for i in range(kh):
            for j in range(kw):
                dst[:, :, i * d[0]:i * d[0] + ends[0]:s[0], j * d[1]:j * d[1] + ends[1]:s[1]] += cols[:, i, j]
    return gxp[:, :, lo[0]:lo[0] + out[0], lo[1]:lo[1] + out[1]]


# -- conv1d / conv2d / conv_transpose2d ---------------------------------------------------------------

def _conv(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, nd: int):
    a = ctx.attrs
    k = weight.shape[2:]
    st, dl = tup(a.stride, nd), tup(a.dilation, nd)
    pads = conv_pads(a.padding, k, dl)
    x4, w4 = (x[:, :, None, :], weight[:, :, None, :]) if nd == 1 else (x, weight)
    if nd == 1:
        k, st, dl, pads = (1,) + k, (1,) + st, (1,) + dl, ((0, 0),) + pads
    xp = _pad(x4, pads)
    out = tuple(conv_out(i, k_, s, d, lo, hi) for i, k_, s, d, (lo, hi) in zip(x4.shape[2:], k, st, dl, pads))
    y, kept = _corr(xp, w4, st, dl, a.groups, out, keep=True)
    kept = kept if ctx.need(1) else None
    if bias is not None:
        y += bias.reshape(-1, 1, 1)
    saved = xp if ctx.need(1) else None

    def backward(gy: np.ndarray):
        g4 = gy[:, :, None, :] if nd == 1 else gy
        gx = gw = gb = None
        if ctx.need(0):
            gx = _igrad(g4, w4, st, dl, a.groups, xp.shape[2:], tuple(lo for lo, _ in pads), x4.shape[2:])
            gx = gx[:, :, 0] if nd == 1 else gx
        if ctx.need(1):
            gw = _wgrad(saved, g4, k, st, dl, a.groups, kept).reshape(weight.shape)
        if bias is None:
            return gx, gw
        if ctx.need(2):
            gb = gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
        return gx, gw, gb

    return (y[:, :, 0] if nd == 1 else y), backward


@kernel("conv1d")
def conv1d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    return _conv(ctx, x, weight, bias, 1)


@kernel("conv2d")
def conv2d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    return _conv(ctx, x, weight, bias, 2)


@kernel("conv_transpose2d")
def conv_transpose2d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    a = ctx.attrs
    k = weight.shape[2:]
    st, dl, pd = tup(a.stride, 2), tup(a.dilation, 2), tup(a.padding, 2)
    opad = transpose_output_padding(a, x.shape[2:])
    full = tuple(transpose_base(i, k_, s, 0, d) for i, k_, s, d in zip(x.shape[2:], k, st, dl))
    out = tuple(f - 2 * p + o for f, p, o in zip(full, pd, opad))
    y = _igrad(x, weight, st, dl, a.groups, full, pd, out)
    y = np.ascontiguousarray(y)
    if bias is not None:
        y += bias.reshape(-1, 1, 1)

    def backward(gy: np.ndarray):
        gyp = _pad(gy, tuple((p, f - p - o) for f, p, o in zip(full, pd, out)))
        gx = _corr(gyp, weight, st, dl, a.groups, x.shape[2:]) if ctx.need(0) else None
        gw = _wgrad(gyp, x, k, st, dl, a.groups) if ctx.need(1) else None
        if bias is None:
            return gx, gw
        return gx, gw, (gy.sum(axis=(0, 2, 3)) if ctx.need(2) else None)

    return y, backward


# -- pooling -------------------------------------------------------------------------------------------

def _pool_setup(a, x: np.ndarray, value: float):
    """Pooling geometry and the input padded so that every kept window lies inside it."""
    geo = pool_geometry(a, x.shape[2:])
    ks, st, pd, dl, out = geo
    pads = tuple((p, max(0, (o - 1) * s + d * (k - 1) + 1 - i - p))
                 for i, k, s, p, d, o in zip(x.shape[2:], ks, st, pd, dl, out))
    return _pad(x, pads, value), pads, geo


def _taps(a: np.ndarray, axis: int, k: int, s: int, d: int, o: int):
    """The k strided views of `a` along `axis` (2 or 3) that a window of size k, stride s, dilation d reads."""
    pre = (slice(None),) * axis
    span = s * (o - 1) + 1
    return [a[pre + (slice(j * d, j * d + span, s),)] for j in range(k)]


def _max_along(a: np.ndarray, axis: int, k: int, s: int, d: int, o: int, track: bool):
    """Running max along one axis; with track, also the index of the first maximum in each window."""
    taps = _taps(a, axis, k, s, d, o)
    m = taps[0].copy()
    for v in taps[1:]:
        np.maximum(m, v, out=m)
    idx = None
    if track and k > 1:
        # index of the first maximum = number of leading taps below the maximum (branch-free: masked
        # stores are slow on random masks)
        below = taps[0] != m
        idx = below.view(np.uint8).copy()
        for v in taps[1:-1]:
            below &= v != m
            idx += below.view(np.uint8)
    return m, idx


def _scatter_along(g: np.ndarray, idx, axis: int, k: int, s: int, d: int, shape) -> np.ndarray:
    """Adjoint of _max_along (idx given) or of a window sum (idx None) along one axis."""
    out = np.zeros(shape, g.dtype)
    for j, v in enumerate(_taps(out, axis, k, s, d, g.shape[axis])):
        if idx is None:
            v += g
        else:
            v += g * (idx == j)
    return out


@kernel("max_pool2d")
def max_pool2d(ctx: Ctx, x: np.ndarray):
    xp, pads, (ks, st, pd, dl, out) = _pool_setup(ctx.attrs, x, -np.inf)
    track = ctx.need(0)
    # separable: max along W, then along H; the first maximum in row-major order wins, as in PyTorch
    r, iw = _max_along(xp, 3, ks[1], st[1], dl[1], out[1], track)
    y, ih = _max_along(r, 2, ks[0], st[0], dl[0], out[0], track)

    def backward(gy: np.ndarray):
        if not ctx.need(0):
            return None
        g1 = _scatter_along(gy, ih, 2, ks[0], st[0], dl[0], r.shape)     # idx None: a 1-wide window
        gxp = _scatter_along(g1, iw, 3, ks[1], st[1], dl[1], xp.shape)
        return _crop(gxp, pads, x.shape)

    return y, backward


def _crop(gxp: np.ndarray, pads, shape) -> np.ndarray:
    return gxp[:, :, pads[0][0]:pads[0][0] + shape[2], pads[1][0]:pads[1][0] + shape[3]]


def _avg_divisor(a, x: np.ndarray, geo, dtype) -> np.ndarray:
    ks, st, pd, dl, out = geo
    parts = []
    for i, k, s, p, o in zip(x.shape[2:], ks, st, pd, out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, i + p)
        if a.count_include_pad:
            parts.append(end - start)
        else:
            parts.append(np.minimum(end, i) - np.maximum(start, 0))
    return np.multiply.outer(parts[0], parts[1]).astype(dtype)


@kernel("avg_pool2d")
def avg_pool2d(ctx: Ctx, x: np.ndarray):
    xp, pads, geo = _pool_setup(ctx.attrs, x, 0.0)
    ks, st, pd, dl, out = geo
    # separable window sums: along H first (contiguous rows), then along W
    taps = _taps(xp, 2, ks[0], st[0], 1, out[0])
    r = taps[0].copy()
    for v in taps[1:]:
        r += v
    taps = _taps(r, 3, ks[1], st[1], 1, out[1])
    y = taps[0].copy()
    for v in taps[1:]:
        y += v
    div = _avg_divisor(ctx.attrs, x, geo, y.dtype)
    y /= div

    def backward(gy: np.ndarray):
        g1 = _scatter_along(gy / div, None, 3, ks[1], st[1], 1, r.shape)
        gxp = _scatter_along(g1, None, 2, ks[0], st[0], 1, xp.shape)
        return _crop(gxp, pads, x.shape)

    return y, backward


def _adaptive_matrix(i: int, o: int, dtype) -> np.ndarray:
    m = np.zeros((o, i), dtype)
    for j, (s, e) in enumerate(adaptive_windows(i, o)):
        m[j, s:e] = 1.0 / (e - s)
    return m


@kernel("adaptive_avg_pool2d")
def adaptive_avg_pool2d(ctx: Ctx, x: np.ndarray):
    n, c, h, w = x.shape
    oh, ow = (i if o is None else o for i, o in zip((h, w), tup(ctx.attrs.output_size, 2)))
    if h % oh == 0 and w % ow == 0:
        kh, kw = h // oh, w // ow
        y = x.reshape(n, c, oh, kh, ow, kw).mean(axis=(3, 5))

        def backward(gy: np.ndarray):
            g = gy * (1.0 / (kh * kw))
            return np.broadcast_to(g[:, :, :, None, :, None], (n, c, oh, kh, ow, kw)).reshape(x.shape)

        return y, backward
    ah, aw = _adaptive_matrix(h, oh, x.dtype), _adaptive_matrix(w, ow, x.dtype)
    y = np.matmul(ah, x @ aw.T)

    def backward_general(gy: np.ndarray):
        return np.matmul(ah.T, gy @ aw)

    return y, backward_general


@kernel("global_avg_pool2d")
def global_avg_pool2d(ctx: Ctx, x: np.ndarray):
    y = x.mean(axis=(2, 3))

    def backward(gy: np.ndarray):
        gx = np.empty(x.shape, gy.dtype)
        gx[...] = (gy * (1.0 / (x.shape[2] * x.shape[3])))[:, :, None, None]
        return gx

    return y, backward


# -- upsample -----------------------------------------------------------------------------------------

def _phases(s: int):
    """Per output phase r of an integer scale s (align_corners=false): offset into the edge-padded
    input and the two interpolation weights; src = (k·s + r + 0.5)/s − 0.5 = k + t."""
    for r in range(s):
        t = (r + 0.5) / s - 0.5
        yield (r, 0, -t, 1.0 + t) if t < 0 else (r, 1, 1.0 - t, t)


def _lin_up(x: np.ndarray, s: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    pre = (slice(None),) * axis
    xe = np.concatenate([x[pre + (slice(0, 1),)], x, x[pre + (slice(n - 1, n),)]], axis=axis)
    y = np.empty(x.shape[:axis] + (n, s) + x.shape[axis + 1:], x.dtype)
    for r, b, w0, w1 in _phases(s):
        y[pre + (slice(None), r)] = w0 * xe[pre + (slice(b, b + n),)] + w1 * xe[pre + (slice(b + 1, b + 1 + n),)]
    return y.reshape(x.shape[:axis] + (n * s,) + x.shape[axis + 1:])


def _lin_up_grad(gy: np.ndarray, s: int, axis: int) -> np.ndarray:
    n = gy.shape[axis] // s
    pre = (slice(None),) * axis
    g = gy.reshape(gy.shape[:axis] + (n, s) + gy.shape[axis + 1:])
    ge = np.zeros(gy.shape[:axis] + (n + 2,) + gy.shape[axis + 1:], gy.dtype)
    for r, b, w0, w1 in _phases(s):
        gr = g[pre + (slice(None), r)]
        ge[pre + (slice(b, b + n),)] += w0 * gr
        ge[pre + (slice(b + 1, b + 1 + n),)] += w1 * gr
    gx = ge[pre + (slice(1, n + 1),)].copy()
    gx[pre + (slice(0, 1),)] += ge[pre + (slice(0, 1),)]
    gx[pre + (slice(n - 1, n),)] += ge[pre + (slice(n + 1, n + 2),)]
    return gx


@kernel("upsample")
def upsample(ctx: Ctx, x: np.ndarray):
    sh, sw = tup(ctx.attrs.scale_factor, 2)
    n, c, h, w = x.shape
    if ctx.attrs.mode == "nearest":
        y = np.empty((n, c, h, sh, w, sw), x.dtype)
        for j in range(sw):
            y[:, :, :, 0, :, j] = x
        for i in range(1, sh):
            y[:, :, :, i] = y[:, :, :, 0]
        y = y.reshape(n, c, h * sh, w * sw)

        def backward(gy: np.ndarray):
            g = gy.reshape(n, c, h, sh, w * sw)            # sum the sh row copies, then the sw column copies
            rows = g[:, :, :, 0].copy()
            for i in range(1, sh):
                rows += g[:, :, :, i]
            rows = rows.reshape(n, c, h, w, sw)
            gx = rows[..., 0].copy()
            for j in range(1, sw):
                gx += rows[..., j]
            return gx

        return y, backward
    y = x
    if sw > 1:
        y = _lin_up(y, sw, 3)
    if sh > 1:
        y = _lin_up(y, sh, 2)
    if y is x:
        y = x.copy()

    def backward_bilinear(gy: np.ndarray):
        g = gy
        if sh > 1:
            g = _lin_up_grad(g, sh, 2)
        if sw > 1:
            g = _lin_up_grad(g, sw, 3)
        return g.copy() if g is gy else g

    return y, backward_bilinear
