"""Convolution and pooling kernels.

Float32 convolutions with one group run on onnxruntime's MLAS kernels (runtime/mlas_conv.py, 2-3x faster
than im2col + OpenBLAS): the forward pass and the stride-1 input gradient as MLAS correlations (_mlas_run), strided
input gradients and those of inputs with fewer channels than an NCHWc block as onnxruntime's
ConvTranspose (one stride phase at a time, _igrad_phases, where it cannot crop), the weight gradient as
one more correlation for batches of small maps (_wgrad_by_corr) or as im2col and MLAS's GEMM
(_wgrad_mlas). Float64 (the
gradient checks) and what MLAS does not take use the NumPy primitives.
Every NumPy convolution runs on three primitives over NCHW arrays (conv1d is conv2d with H = 1):
  _corr   the forward correlation: im2col as a strided window view, copied block by block of samples
          into a column matrix (_Columns), and one GEMM per block or per sample; a 1×1 stride-1 conv
          is a plain GEMM on the input itself;
  _wgrad  the weight gradient: the same columns (kept from the forward pass when the batch is one
          block, else rebuilt block by block) times the output gradient;
  _igrad  the input gradient: for stride 1 a correlation of the padded output gradient with the
          flipped kernel, otherwise (or when the output has many more channels than the input) a
          GEMM to columns and a col2im that loops over the kh·kw kernel offsets only.
A stride-1 conv with 16-64 channels on small images (VGG's 3×3 convs at 32 and 16 px) runs instead on
shifted views (_Grid): the input once in channels-last order, zero-padded and flattened to rows, and per
kernel offset one GEMM over a contiguous row range, accumulated in place (runtime/blas.py), for the
forward, the input gradient and the weight gradient alike: no im2col copy, 1.1-1.2x faster there.
conv_transpose2d is conv2d with forward and input gradient swapped. Blocks keep each column matrix
around _BLOCK bytes, so that it is still in cache when the GEMM reads it.
Pooling is separable (max along W, then H, as PyTorch's row-major tie rule needs) and loops over the
kernel offsets only, plane by plane in cache-sized pieces (_pool_run); its backward works by stride
phase on zero-padded flat arrays, so every input position is assigned by its first tap and added to
only where windows overlap (_phase_scatter). Bilinear upsampling loops over the scale phases only.
Elementwise work (padding, im2col copies, col2im, pooling) goes through runtime.parallel: one thread
by default, split over the samples or channels when SPECC_NUM_THREADS asks for more, and pooling of
16 MiB or more (parallel.SPLIT_ALWAYS) and a small weight gradient's im2col blocks over BLAS's threads.
"""
from __future__ import annotations

import functools
import math
import sys
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.ops.convolution import (adaptive_windows, conv_out, conv_pads, pool_geometry,
                                      transpose_base, transpose_output_padding, tup)

from .. import blas, mlas_conv, ort_ops, overlap, parallel, threads
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
    if lead == 0 or not parallel.splits(2 * math.prod(shape) * x.itemsize):
        out = np.full(shape, value, x.dtype) if value else np.zeros(shape, x.dtype)
        out[tuple(dst)] = x[tuple(src)]
        return out
    out = np.empty(shape, x.dtype)
    src, dst = (slice(None),) + tuple(src[1:]), (slice(None),) + tuple(dst[1:])

    def part(n0: int, n1: int):                # split over the first (batch) dim
        o = out[n0:n1]
        o.fill(value)                          # a fast fill: strided border writes are slower
        o[dst] = x[n0:n1][src]

    parallel.run(part, shape[0], 2 * out.nbytes)
    return out


def _padded(sp, pads) -> tuple:
    """The spatial size sp once padded by pads ((before, after) per dim)."""
    return tuple(i + lo + hi for i, (lo, hi) in zip(sp, pads))


def _pcopy(dst: np.ndarray, src) -> None:
    """np.copyto(dst, src), split over the threads along dst's axis 1 (channels)."""
    if not parallel.splits(2 * dst.nbytes):
        np.copyto(dst, src)
        return

    def part(c0: int, c1: int):
        np.copyto(dst[:, c0:c1], src[:, c0:c1])

    parallel.run(part, dst.shape[1], 2 * dst.nbytes)


def _windows(xp: np.ndarray, k, s, d, out) -> np.ndarray:
    """Read-only view [N, C, kh, kw, oh, ow] of the kernel windows of a padded NCHW array."""
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, xp.shape[:2] + tuple(k) + tuple(out),
                      (sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]), writeable=False)


_MIN_COLS = 512             # GEMM columns per block, at least (small images: several samples per block)
_SAMPLE_COLS = 1024         # from this many columns per sample, one GEMM per sample (no output transpose)
_WIDE = 1.1                 # stride-1 columns run over the padded width while it wastes at most 10%
_WIDE_ROWS = 256            # ... or while the column matrix has at most this many rows


def _blocks(n: int, per_sample: int, cols: int = _MIN_COLS, block: int | None = None):
    nb = max(1, min(n, max((block or _BLOCK) // max(per_sample, 1), -(-_MIN_COLS // max(cols, 1)))))
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

    def __init__(self, xp: np.ndarray, k, s, d, out, dtype, fold: bool = False, block: int | None = None):
        """fold: always the folded layout with exact columns (for the weight gradient's GEMMs on MLAS);
        block: bytes of columns per block (default _BLOCK)."""
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
        self.wide = wq is not None and (wq <= _WIDE * ow or self.rows <= _WIDE_ROWS) and not fold
        self._src = (xp, tuple(k), s, d, out)
        self._parts: list | None = None
        self.grid = (oh, wq) if self.wide else (oh, ow)
        self.t = (oh - 1) * wq + ow if self.wide else oh * ow     # wide: positions read, all in bounds
        self.r = self.grid[0] * self.grid[1]
        self.per_sample = self.r >= _SAMPLE_COLS and not fold
        self.dtype = dtype
        self.blocks = _blocks(n, self.rows * self.r * np.dtype(dtype).itemsize, self.r, block)

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

            def split(n0: int, n1: int):
                for a in range(pa):
                    for b in range(pb):
                        src = xp[n0:n1, :, a::s[0], b::s[1]]
                        phases[a, b, n0:n1, :, :src.shape[2], :src.shape[3]] = src

            parallel.run(split, n, 2 * phases.nbytes)
            for a in range(pa):
                for b in range(pb):
                    ph = phases[a, b]
                    sn, sc, sh, sw = ph.strides
                    ka, kb = len(range(a, k[0], s[0])), len(range(b, k[1], s[1]))
                    parts.append((slice(a, None, s[0]), slice(b, None, s[1]), as_strided(
                        ph, (n, c, ka, kb, self.t), (sn, sc, sh, sw, sw), writeable=False)))
        self._parts = parts
        return parts

    def __iter__(self):
        """Yield (n0, n1, cols): [m, C·kh·kw, R] per sample, or [C·kh·kw, m·R] folded (m = n1 − n0)."""
        buf = None
        for n0, n1 in self.blocks:
            buf, cols = self.block(n0, n1, buf)
            yield n0, n1, cols

    def block(self, n0: int, n1: int, buf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(buffer, cols) of samples n0:n1 as __iter__ yields them; `buf` is reused when its shape fits."""
        m = n1 - n0
        shape = (m,) + self.shape + (self.r,) if self.per_sample else self.shape + (m, self.r)
        if buf is None or buf.shape != shape:
            # the junk tail of each wide row is never written: zero it once per buffer
            buf = (np.zeros if self.wide else np.empty)(shape, self.dtype)
        self._fill(buf, self.parts(), n0, n1)
        return buf, buf.reshape((m, self.rows, self.r) if self.per_sample else (self.rows, m * self.r))

    def _fill(self, buf: np.ndarray, parts, n0: int, n1: int) -> None:
        """Copy samples n0:n1 into buf, split over the threads by input channels (whole rows each)."""
        def channels(c0: int, c1: int):
            for si, sj, view in parts:
                src = view[n0:n1, c0:c1]
                if self.per_sample:
                    dst = buf[:, c0:c1, si, sj]
                else:
                    dst = buf[c0:c1, si, sj]
                    src = src.transpose((1, 2, 3, 0) + tuple(range(4, src.ndim)))
                if self.wide:
                    np.copyto(dst[..., :self.t], src)
                else:
                    np.copyto(dst.reshape(dst.shape[:-1] + self.grid), src)

        parallel.run(channels, self.shape[0], 2 * buf.nbytes)


_NO_PADS = ((0, 0), (0, 0))


def _corr(xp: np.ndarray, w: np.ndarray, s, d, groups: int, out, keep: bool = False):
    """Cross-correlation of padded xp [N, C, Hp, Wp] with w [O, C/g, kh, kw]: y [N, O, *out].
    With keep, also returns the columns when the batch is one block (else None) for _wgrad."""
    n, c = xp.shape[:2]
    o, cg, kh, kw = w.shape
    g, og = groups, o // groups
    kk = cg * kh * kw
    oh, ow = out
    dt = np.result_type(xp.dtype, w.dtype)
    if mlas_conv.applies(xp, w, groups, _NO_PADS):
        y = mlas_conv.conv(xp, w, None, _NO_PADS, s, d)[:, :, :oh, :ow]
        return (y, None) if keep else y
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
            _pcopy(y[n0:n1], yc.reshape((o, m) + cols.grid)[..., :ow].transpose(1, 0, 2, 3))
        elif cols.wide and cols.grid[1] != ow:
            yc = np.matmul(wm, last.reshape(m, g, kk, -1))                   # [m, g, og, R]
            _pcopy(y[n0:n1], yc.reshape((m, o) + cols.grid)[..., :ow])
        else:
            np.matmul(wm, last.reshape(m, g, kk, -1), out=y[n0:n1].reshape(m, g, og, -1))
    if keep:
        return y, (last if len(cols.blocks) == 1 else None)
    return y


_SWAP_MAX = 1 << 18         # weight-gradient elements up to which _wgrad's GEMMs run transposed


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
    # with the convolutions on MLAS, their weight-gradient GEMMs too: OpenBLAS's threads, once woken,
    # spin on the cores that onnxruntime's threads need (VGG's step: 120 -> 94 ms with OpenBLAS kept idle);
    # folded, exact columns: a block is one GEMM (one session call per sample cost more than its GEMM)
    # and the output gradient needs no zero-padded copy (VGG's first conv 2.06 -> 1.54 ms, LeNet-5's
    # 1.04 -> 0.84, ResNet-18's 8×256×14×14 9.6 -> 8.7)
    # (kept columns come from _corr's NumPy path, in its layout: NumPy's GEMMs read them)
    mlas = g == 1 and mlas_conv.gemm_ok(dt) and kept is None
    if mlas:
        return _wgrad_mlas(xp, gy, k, s, d, kk).reshape(o, cg, *k)
    cols = _Columns(xp, k, s, d, (oh, ow), dt)
    gw = np.zeros((g, og, kk), dt)
    gyc = None
    for n0, n1, cm in ([(0, n, kept)] if kept is not None else cols):
        m = n1 - n0
        if cols.grid[1] != ow:                                  # wide columns: zero gradient at junk positions
            shape = (m, o) + cols.grid if cols.per_sample else (o, m) + cols.grid
            if gyc is None or gyc.shape != shape:
                gyc = np.zeros(shape, dt)
            if cols.per_sample:
                _pcopy(gyc[..., :ow], gy[n0:n1])
            else:
                _pcopy(gyc[..., :ow].transpose(1, 0, 2, 3), gy[n0:n1])
            g2 = gyc
        else:
            g2 = gy[n0:n1] if cols.per_sample else gy[n0:n1].transpose(1, 0, 2, 3)
        if cols.per_sample:
            gw += np.matmul(g2.reshape(m, g, og, -1), cm.reshape(m, g, kk, -1).swapaxes(-1, -2)).sum(0)
        else:
            gw += np.matmul(g2.reshape(g, og, -1), cm.reshape(g, kk, -1).swapaxes(-1, -2))
    return gw.reshape(o, cg, *k)


_BIG_BLOCK = 16 << 20       # bytes of im2col columns per block for a big weight gradient
_SIDE_BY_SIDE_MACS = 1 << 26    # multiply-adds from which blocks run side by side (below, a second thread's
                                # column buffer cost more memory than its time saved: LeNet-5's first conv)


def _wgrad_mlas(xp: np.ndarray, gy: np.ndarray, k, s, d, kk: int) -> np.ndarray:
    """_wgrad of one group on MLAS's GEMM over folded exact im2col columns: [O, kk].

    A small gradient (at most _SWAP_MAX elements) is computed transposed, the columns as the GEMM's M
    side: MLAS's GEMM ran those 1.1-2x faster (ResNet-18's 7×7 stem 59 -> 45 ms, its 8×64×56×56 3×3
    15.4 -> 14.0). Its GEMMs run on one thread each (threaded, this orientation's result changed with the
    thread count), and from _SIDE_BY_SIDE_MACS on in at least two blocks of samples side by side, each
    thread filling its own columns (a GEMM with a [kk, O] output hardly gained from a second thread, and
    the im2col copies ran on one; VGG's 32×32×32×32 10.4 -> 5.0 ms). A big gradient is one threaded GEMM
    per block of up to _BIG_BLOCK bytes of columns (fewer passes over the gradient it accumulates:
    ResNet-18's 8×256×14×14 12.8 -> 8.6 ms). The blocks do not depend on the thread count, and the
    blocks' partials are summed in block order: the same bits at any thread count."""
    n, o = gy.shape[:2]
    swap = kk * o <= _SWAP_MAX
    macs = kk * o * n * gy.shape[2] * gy.shape[3]
    side_by_side = swap and macs >= _SIDE_BY_SIDE_MACS and n > 1
    block = _BIG_BLOCK if not swap else None
    if side_by_side:                                # at least two blocks, whatever the thread count
        block = min(_BLOCK, -(-n // 2) * kk * gy.shape[2] * gy.shape[3] * gy.itemsize)
    cols = _Columns(xp, k, s, d, gy.shape[2:], gy.dtype, fold=True, block=block)
    nb = len(cols.blocks)
    if nb == 0:                                     # an empty batch
        return np.zeros((o, kk), gy.dtype)
    t = min(threads.cap(), nb) if side_by_side else 1
    parts = np.empty((nb, kk, o), gy.dtype) if t > 1 else None
    local = threading.local()

    def block_gemm(bi: int) -> np.ndarray:
        n0, n1 = cols.blocks[bi]
        local.buf, cm = cols.block(n0, n1, getattr(local, "buf", None))
        g2 = gy[n0:n1].transpose(1, 0, 2, 3).reshape(o, -1)
        return mlas_conv.gemm_nt(cm, g2, 1) if swap else mlas_conv.gemm_nt(g2, cm)

    if parts is None:
        acc = block_gemm(0)
        for bi in range(1, nb):
            acc += block_gemm(bi)
    else:
        def blocks(b0: int, b1: int):
            for bi in range(b0, b1):
                parts[bi] = block_gemm(bi)

        parallel.run(blocks, nb, 1 << 62, step=1, threads=t)
        acc = parts[0]
        for p in parts[1:]:
            acc += p
    return np.ascontiguousarray(acc.T) if swap else acc


def _igrad(gy: np.ndarray, w: np.ndarray, s, d, groups: int, full, lo, out) -> np.ndarray:
    """Gradient of _corr's input: the region [lo, lo + out) of the gradient of a padded input of size `full`."""
    n, o, oh, ow = gy.shape
    _, cg, kh, kw = w.shape
    g, og = groups, o // groups
    c = g * cg
    ct = _transpose_geometry(gy, w, s, d, groups, lo, out)
    if ct is not None:
        return mlas_conv.conv_transpose(gy, w, *ct)
    on_mlas = c >= 4 and mlas_conv.applies(gy, w, groups, _NO_PADS)     # 3-channel inputs: GEMM + col2im won
    if tuple(s) == (1, 1) and (on_mlas or o * out[0] * (out[1] + d[1] * (kw - 1)) <= 3 * c * oh * ow):
        # correlation of the padded output gradient with the flipped, in/out-swapped kernel (cheaper
        # than GEMM + col2im unless the gradient has many more channels than the input and runs on NumPy)
        wf = w.reshape(g, og, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(c, og, kh, kw)[:, :, ::-1, ::-1]
        pads = []
        for k_, d_, l_, o_, m in zip((kh, kw), d, lo, out, (oh, ow)):
            before = d_ * (k_ - 1) - l_
            pads.append((before, o_ + d_ * (k_ - 1) - m - before))
        if on_mlas and mlas_conv.applies(gy, wf, g, pads):
            # MLAS pads inside its kernel: no padded copy of gy (VGG's 32×32×32×32: 3.6 -> 2.9 ms)
            return mlas_conv.conv(gy, wf, None, pads, (1, 1), d)
        return _corr(_pad(gy, pads), wf, (1, 1), d, g, out)
    if on_mlas and tuple(d) == (1, 1):
        return _igrad_phases(gy, w, s, full, lo, out)
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

        def col2im(c0: int, c1: int):
            for i in range(kh):
                for j in range(kw):
                    dst[c0:c1, :, i * d[0]:i * d[0] + ends[0]:s[0], j * d[1]:j * d[1] + ends[1]:s[1]] += \
                        cols[c0:c1, i, j]

        parallel.run(col2im, c, 2 * cols.nbytes)
    return gxp[:, :, lo[0]:lo[0] + out[0], lo[1]:lo[1] + out[1]]


_CT_STRIDED = True          # strided input gradients as one ConvTranspose: faster than the stride phases at
                            # every size measured (ResNet-18's 3×3/2 layers 7.1 -> 6.8, 6.5 -> 5.3, 9.8 -> 7.5 ms)


def _transpose_geometry(gy: np.ndarray, w: np.ndarray, s, d, groups: int, lo, out):
    """(pads, strides, dilations, output padding) for _igrad as onnxruntime's ConvTranspose where that was
    faster than the alternatives (docs/benchmarks.md): inputs with fewer channels than an NCHWc block (the
    MLAS correlation computes padded channels; GEMM + col2im in NumPy is slower) and strided convolutions
    (one call, not one per stride phase).
    None: not here (float64, groups, no onnxruntime, SPECC_ORT_OPS=0, or a crop that ConvTranspose cannot
    express)."""
    if groups != 1 or gy.dtype != np.float32 or w.dtype != np.float32 or not mlas_conv.gemm_ok(np.float32):
        return None
    if not ort_ops.enabled():
        return None
    c, (kh, kw) = w.shape[1], w.shape[2:]
    strided = tuple(s) != (1, 1)
    if not (c < mlas_conv.block_size() or (strided and (kh * kw == 1 or _CT_STRIDED))):
        return None
    pads, extra = [], []
    for o_, k_, s_, d_, l_, n_ in zip(gy.shape[2:], (kh, kw), s, d, lo, out):
        end = s_ * (o_ - 1) + d_ * (k_ - 1) + 1 - l_ - n_            # what the full gradient has past out
        if end < 0 and -end >= s_:                                  # onnxruntime: output padding < stride
            return None
        pads.append((l_, max(end, 0)))
        extra.append(max(-end, 0))
    return tuple(pads), tuple(s), tuple(d), tuple(extra)


def _igrad_phases(gy: np.ndarray, w: np.ndarray, s, full, lo, out) -> np.ndarray:
    """_igrad of a strided convolution (dilation 1, one group) on MLAS, one stride phase at a time: the
    positions a::sh, b::sw of the padded input's gradient get Σ gy[Y − i', X − j'] · W[a + sh·i', b + sw·j'],
    a full correlation of gy with that phase's flipped sub-kernel; no multiply by an inserted zero."""
    n, o, oh, ow = gy.shape
    c, (kh, kw) = w.shape[1], w.shape[2:]
    size = [max(f, l_ + o_) for f, l_, o_ in zip(full, lo, out)]
    gxp = np.zeros((n, c) + tuple(size), np.float32)
    for a in range(min(s[0], kh)):
        for b in range(min(s[1], kw)):
            sub = w[:, :, a::s[0], b::s[1]]
            ka, kb = sub.shape[2:]
            wf = np.ascontiguousarray(sub.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            ph = mlas_conv.conv(gy, wf, None, ((ka - 1, ka - 1), (kb - 1, kb - 1)), (1, 1), (1, 1))
            dst = gxp[:, :, a::s[0], b::s[1]]
            rows, cols = min(dst.shape[2], ph.shape[2]), min(dst.shape[3], ph.shape[3])
            dst[:, :, :rows, :cols] = ph[:, :, :rows, :cols]
    return gxp[:, :, lo[0]:lo[0] + out[0], lo[1]:lo[1] + out[1]]


# -- shifted-view convolution (stride 1) ----------------------------------------------------------------

# Where the shifted views beat im2col (tools/bench_conv.py, docs/benchmarks.md "Shifted-view convolution"):
# each offset's GEMM has K = C_in and N = C_out, so few channels make thin, slow GEMMs; many channels or
# large images make im2col's own GEMM (K = C_in·kh·kw) efficient enough that its copy no longer matters.
_SHIFT_MIN_CH = 16          # input and output channels at least ...
_SHIFT_MAX_CH = 64          # ... and at most
_SHIFT_MAX_POS = 1024       # output positions per sample at most
_SHIFT_WASTE = 1.3          # padded grid positions per output position at most (the junk is computed too)
_shift_enabled = True       # tools/bench_conv.py switches it off to time the im2col path


def _shifted_ok(x4: np.ndarray, w4: np.ndarray, st, dl, groups: int, pads) -> bool:
    """Whether a conv runs as shifted views: stride 1, one group, 16-64 channels, small images, little
    padding waste, and BLAS that accumulates in place (measured: docs/benchmarks.md)."""
    if not _shift_enabled or tuple(st) != (1, 1) or groups != 1 or any(p < 0 for lo_hi in pads for p in lo_hi):
        return False
    n, c, h, w = x4.shape
    o, _, kh, kw = w4.shape
    plain = kh * kw == 1 and not any(p for lo_hi in pads for p in lo_hi)    # _corr's plain GEMM
    if plain or not _SHIFT_MIN_CH <= min(c, o) <= max(c, o) <= _SHIFT_MAX_CH:
        return False
    if not blas.fused(np.result_type(x4, w4)):
        return False
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    oh, ow = hp - dl[0] * (kh - 1), wp - dl[1] * (kw - 1)
    return n > 0 and oh > 0 and 0 < oh * ow <= _SHIFT_MAX_POS and hp * wp <= _SHIFT_WASTE * oh * ow


class _Grid:
    """The padded input of a stride-1 conv in channels-last order, flattened to rows X [N·Hp·Wp, C].

    Output position (n, p, q) is row r = (n·Hp + p)·Wp + q of the grid, and kernel offset (i, j) reads row
    r + off with off = i·dh·Wp + j·dw; so y[r] = Σ X[r + off] · W_ij over the rows r < L = N·Hp·Wp − max off,
    kh·kw GEMMs over contiguous row ranges (no im2col copy). Rows whose (p, q) lies outside the output
    are junk, computed and dropped: a (Hp·Wp)/(oh·ow) share of extra work.
    """

    def __init__(self, x4: np.ndarray, pads, k, dl, dt):
        n, c, h, w = x4.shape
        (top, bottom), (left, right) = pads
        self.n, self.c, self.hw, self.lo, self.dtype = n, c, (h, w), (top, left), np.dtype(dt)
        self.hp, self.wp = h + top + bottom, w + left + right
        self.out = (self.hp - dl[0] * (k[0] - 1), self.wp - dl[1] * (k[1] - 1))
        self.offs = [i * dl[0] * self.wp + j * dl[1] for i in range(k[0]) for j in range(k[1])]
        self.rows = n * self.hp * self.wp
        self.length = self.rows - self.offs[-1]
        xp = np.zeros((n, self.hp, self.wp, c), dt)
        _pcopy(xp[:, top:top + h, left:left + w].transpose(0, 3, 1, 2), x4)
        self.x = xp.reshape(self.rows, c)

    def valid(self, a: np.ndarray, lo=(0, 0), size=None) -> np.ndarray:
        """Rows a [N·Hp·Wp, ch] as an [N, ch, h, w] view of the grid region starting at lo."""
        (t, l), (h, w) = lo, size or self.out
        return a.reshape(self.n, self.hp, self.wp, -1)[:, t:t + h, l:l + w].transpose(0, 3, 1, 2)

    def forward(self, wk: np.ndarray) -> np.ndarray:
        """y [N, O, oh, ow] for the kernel as wk [kh·kw, C, O]."""
        yr = np.empty((self.rows, wk.shape[2]), wk.dtype)
        _shifted_gemms(self.x, self.offs, wk, yr, self.length)
        y = np.empty((self.n, wk.shape[2]) + self.out, wk.dtype)
        _pcopy(y, self.valid(yr))
        return y

    def grad_rows(self, gy: np.ndarray) -> np.ndarray:
        """The output gradient gy [N, O, oh, ow] as grid rows [max off + N·Hp·Wp, O]: after max off zero rows
        (read by igrad's first rows), zero at the junk rows."""
        g = np.zeros((self.offs[-1] + self.rows, gy.shape[1]), self.dtype)
        _pcopy(self.valid(g[self.offs[-1]:]), gy)
        return g

    def wgrad(self, g: np.ndarray) -> np.ndarray:
        """Weight gradient [kh·kw, C, O]: X[off:off + L]ᵀ · G[:L] per offset."""
        g, ln = g[self.offs[-1]:], self.length
        gw = np.empty((len(self.offs), self.c, g.shape[1]), g.dtype)
        for i, off in enumerate(self.offs):
            blas.gemm(self.x[off:off + ln].T, g[:ln], gw[i], beta=0.0)
        return gw

    def igrad(self, g: np.ndarray, wk: np.ndarray) -> np.ndarray:
        """Input gradient [N, C, H, W]: row r gets Σ G[r − off] · W_offᵀ (a forward pass over the zero-led
        gradient rows with the offsets mirrored), cropped to the input."""
        gx = np.empty((self.rows, self.c), g.dtype)
        top = self.offs[-1]
        _shifted_gemms(g, [top - off for off in self.offs], wk.transpose(0, 2, 1), gx, self.rows)
        out = np.empty((self.n, self.c) + self.hw, g.dtype)
        _pcopy(out, self.valid(gx, self.lo, self.hw))
        return out


def _shifted_gemms(src: np.ndarray, offs, mats: np.ndarray, dst: np.ndarray, rows: int) -> None:
    """dst[:rows] = Σ_i src[offs[i]:offs[i] + rows] · mats[i], accumulated in place (BLAS beta = 1).
    Row blocks that keep dst in cache across the offsets were measured no faster: OpenBLAS blocks itself."""
    for i, off in enumerate(offs):
        blas.gemm(src[off:off + rows], mats[i], dst[:rows], beta=1.0 if i else 0.0)


def _shifted_run(ctx: Ctx, x4: np.ndarray, w4: np.ndarray, bias, pads, dl, squeeze: bool):
    """_conv_run's stride-1 case on a _Grid: forward, and a backward that computes only what is needed."""
    dt = np.result_type(x4.dtype, w4.dtype)
    o, _, kh, kw = w4.shape
    grid = _Grid(x4, pads, (kh, kw), dl, dt)
    wk = np.ascontiguousarray(w4.transpose(2, 3, 1, 0), dt).reshape(kh * kw, -1, o)
    y = grid.forward(wk)
    if bias is not None:
        y += bias.reshape(-1, 1, 1)
    if not ctx.need(1):
        grid.x = None                                       # the input rows only serve the weight gradient

    def backward(gy: np.ndarray):
        gx = gw = None
        if ctx.need(0) or ctx.need(1):
            g = grid.grad_rows(gy[:, :, None, :] if squeeze else gy)
        if ctx.need(0):
            gx = grid.igrad(g, wk)
            gx = gx[:, :, 0] if squeeze else gx
        if ctx.need(1):
            gw = np.ascontiguousarray(grid.wgrad(g).reshape(kh, kw, -1, o).transpose(3, 2, 0, 1))
            gw = gw[:, :, 0] if squeeze else gw
        if bias is None:
            return gx, gw
        return gx, gw, (gy.sum(axis=(0,) + tuple(range(2, gy.ndim))) if ctx.need(2) else None)

    return (y[:, :, 0] if squeeze else y), backward


# -- conv1d / conv2d / conv_transpose2d ---------------------------------------------------------------

def _one_thread_if_small(kernel_fn, x: np.ndarray, weight: np.ndarray, positions: int):
    """Run a convolution kernel (forward, and later its backward) with one BLAS thread when its GEMMs are
    small in total (runtime.threads): `positions` output (conv) or input (transpose) positions per sample."""
    work = (x.shape[0] * positions, weight.size, 1)          # m·k·n of the whole convolution
    with threads.gemm(*work):
        y, back = kernel_fn()

    def backward(gy: np.ndarray):
        with threads.gemm(*work):
            return back(gy)

    return y, backward


def _conv(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, nd: int):
    positions = math.prod(-(-i // s) for i, s in zip(x.shape[2:], tup(ctx.attrs.stride, nd)))
    return _one_thread_if_small(lambda: _conv_run(ctx, x, weight, bias, nd), x, weight, positions)


def _conv_run(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, nd: int):
    a = ctx.attrs
    k = weight.shape[2:]
    st, dl = tup(a.stride, nd), tup(a.dilation, nd)
    pads = conv_pads(a.padding, k, dl)
    x4, w4 = (x[:, :, None, :], weight[:, :, None, :]) if nd == 1 else (x, weight)
    if nd == 1:
        k, st, dl, pads = (1,) + k, (1,) + st, (1,) + dl, ((0, 0),) + pads
    if mlas_conv.applies(x4, w4, a.groups, pads):
        return _mlas_run(ctx, x4, w4, bias, pads, st, dl, nd == 1)
    if _shifted_ok(x4, w4, st, dl, a.groups, pads):
        return _shifted_run(ctx, x4, w4, bias, pads, dl, nd == 1)
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


_LATER_MACS = 1 << 25       # weight-gradient multiply-adds from which it runs beside the input gradient (below,
                            # the hand-over cost more than it saved: LeNet-5's step 5 % slower)


def _mlas_run(ctx: Ctx, x4: np.ndarray, w4: np.ndarray, bias, pads, st, dl, squeeze: bool):
    """_conv_run on MLAS (runtime/mlas_conv.py): the forward, the input gradient through _igrad's
    correlations, the weight gradient through _mlas_wgrad (beside the rest of the backward pass when
    big: runtime/overlap.py)."""
    y = mlas_conv.conv(x4, w4, bias, pads, st, dl)

    def backward(gy: np.ndarray):
        g4 = gy[:, :, None, :] if squeeze else gy
        gx = gw = gb = None
        # the weight and bias gradients beside the input gradient (runtime/overlap.py) when big enough and
        # on MLAS (a 1×1 stride-1 conv's is a NumPy matmul: OpenBLAS, whose thread count is the process's)
        full = _padded(x4.shape[2:], pads)
        beside = gy.size * w4[0].size >= _LATER_MACS and not _is_plain_gemm(w4.shape[2:], st, full, gy.shape[2:])
        later = functools.partial(overlap.later, nbytes=gy.nbytes) if beside else overlap.now
        if ctx.need(1):
            def weight_grad():
                gw = _mlas_wgrad(x4, g4, w4, pads, st, dl)
                return gw[:, :, 0] if squeeze else gw

            gw = later(weight_grad)
        if bias is not None and ctx.need(2):
            gb = later(lambda: gy.sum(axis=(0,) + tuple(range(2, gy.ndim))))
        if ctx.need(0):
            gx = _igrad(g4, w4, st, dl, 1, full, tuple(lo for lo, _ in pads), x4.shape[2:])
            gx = gx[:, :, 0] if squeeze else gx
        return (gx, gw) if bias is None else (gx, gw, gb)

    return (y[:, :, 0] if squeeze else y), backward


def _mlas_wgrad(x4: np.ndarray, g4: np.ndarray, w4: np.ndarray, pads, st, dl) -> np.ndarray:
    """The weight gradient beside an MLAS forward: for a stride-1 conv over a batch of small maps, itself a
    correlation on MLAS (_wgrad_by_corr), else im2col and one GEMM. (Shifted views, faster at one BLAS
    thread on VGG's middle layers, were 1.3-1.8x slower than im2col at two: docs/benchmarks.md.)"""
    n, c = x4.shape[:2]
    oh, ow = g4.shape[2:]
    if tuple(st) == (1, 1) and tuple(dl) == (1, 1) and n >= _WG_MIN_BATCH and c >= 4 and oh * ow <= _WG_MAX_MAP:
        # zero-padded here: MLAS's edge code for a padded oh×ow kernel was 1.5x slower than its interior
        xt = _pad(x4.transpose(1, 0, 2, 3), pads)
        gt = np.ascontiguousarray(g4.transpose(1, 0, 2, 3))
        if mlas_conv.applies(xt, gt, 1, _NO_PADS):
            return _wgrad_by_corr(xt, gt, _NO_PADS, w4.shape[2:])
    return _wgrad(_pad(x4, pads), g4, w4.shape[2:], st, dl, 1)


_WG_MIN_BATCH = 16          # _wgrad_by_corr from this batch size on (the batch is its channel count) ...
_WG_MAX_MAP = 256           # ... and up to this many output positions (measured: docs/benchmarks.md)


def _wgrad_by_corr(xt: np.ndarray, gt: np.ndarray, pads, k) -> np.ndarray:
    """The weight gradient of a stride-1 conv as one more correlation: gw[o, c, i, j] = Σ_n,h,w
    gy[n, o, h, w] · xp[n, c, h + i, w + j] is the input's channels taken as a batch (xt [C, N, H, W]) and
    correlated with the output gradient as a filter (gt [O, N, oh, ow]): an oh×ow kernel, an i×j output."""
    y = mlas_conv.conv(xt, gt, None, pads, (1, 1), (1, 1))       # [C, O, >= kh, >= kw]
    return np.ascontiguousarray(y[:, :, :k[0], :k[1]].transpose(1, 0, 2, 3))


@kernel("conv1d")
def conv1d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    return _conv(ctx, x, weight, bias, 1)


@kernel("conv2d")
def conv2d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    return _conv(ctx, x, weight, bias, 2)


@kernel("conv_transpose2d")
def conv_transpose2d(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    return _one_thread_if_small(lambda: _conv_transpose_run(ctx, x, weight, bias), x, weight,
                                math.prod(x.shape[2:]))


def _conv_transpose_run(ctx: Ctx, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
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

_POOL_BLOCK = 4 << 20       # bytes of padded input per piece of pooling work (stays in cache between passes)


def _pool_pads(x_sp, geo):
    """(before, after) padding per spatial dim such that every kept window lies inside the padded input."""
    ks, st, pd, dl, out = geo
    return tuple((p, max(0, (o - 1) * s + d * (k - 1) + 1 - i - p))
                 for i, k, s, p, d, o in zip(x_sp, ks, st, pd, dl, out))


def _planes(a: np.ndarray) -> np.ndarray:
    """[N, C, H, W] as [N·C, 1, H, W] (a view when possible): pooling works plane by plane."""
    return a.reshape((-1, 1) + a.shape[2:])


def _pool_run(fn, planes: int, plane_bytes: int) -> None:
    """fn(lo, hi) over the planes, in cache-sized pieces, split over the threads: from
    parallel.SPLIT_ALWAYS bytes over as many as BLAS may use (threads.cap())."""
    t = parallel.threads_for(planes * plane_bytes)
    step = max(1, min(_POOL_BLOCK // max(plane_bytes, 1), -(-planes // t)))
    parallel.run(fn, planes, planes * plane_bytes, step=step, threads=t)


def _taps(a: np.ndarray, axis: int, k: int, s: int, d: int, o: int):
    """The k strided views of `a` along `axis` (2 or 3) that a window of size k, stride s, dilation d reads."""
    pre = (slice(None),) * axis
    span = s * (o - 1) + 1
    return [a[pre + (slice(j * d, j * d + span, s),)] for j in range(k)]


def _max_along(a: np.ndarray, axis: int, k: int, s: int, d: int, m: np.ndarray, idx: np.ndarray | None) -> None:
    """Running max along one axis into m; into idx (uint8) the index of the first maximum in each window."""
    taps = _taps(a, axis, k, s, d, m.shape[axis])
    if k == 1:
        np.copyto(m, taps[0])
    else:
        np.maximum(taps[0], taps[1], out=m)
    for v in taps[2:]:
        np.maximum(m, v, out=m)
    if idx is not None:
        # index of the first maximum = number of leading taps below the maximum (branch-free: masked
        # stores are slow on random masks)
        below = np.not_equal(taps[0], m)
        np.copyto(idx, below.view(np.uint8))
        if k > 2:
            t = np.empty_like(below)
            for v in taps[1:-1]:
                below &= np.not_equal(v, m, out=t)
                idx += below.view(np.uint8)


def _phase_scatter(gf: np.ndarray, mf: np.ndarray | None, k: int, s: int, d: int, inner: int) -> np.ndarray:
    """Adjoint of a strided window max (mf given: tap j gets the gradient where mf == j) or window sum
    (mf None) along one axis, on flat arrays: returns ph [s, gf.size], the gradient by phase.

    gf (and mf) are flattened arrays whose scattered axis has inner size `inner` and is padded with
    zeros (mf: with a value no tap has) to lq ≥ o + (k−1)·d // s entries. Position p = s·q + r of that
    axis receives tap j = (a·s + r) / d of window q − a, so the taps of phase r are the gradient
    shifted by a·inner along the flat array: the padding supplies the zeros at the start of each row.
    Per position the taps are summed in the order j = 0, 1, …; the first one is assigned (no zero fill).
    """
    n = gf.size
    ph = np.empty((s, n), gf.dtype)
    written = [False] * s
    tmp = None
    for j in range(k):
        a, r = divmod(j * d, s)
        sh = a * inner
        src = gf[:n - sh]
        if written[r]:
            if mf is not None:
                if tmp is None:
                    tmp = np.empty(n, gf.dtype)
                src = np.multiply(src, np.equal(mf[:n - sh], j), out=tmp[:n - sh])
            ph[r, sh:] += src
            ph[r, :sh] += 0                # what the zero padding adds elsewhere (-0.0 + 0 → 0.0): the
            continue                       # same bits wherever a piece of planes starts
        ph[r, :sh] = 0
        if mf is None:
            np.copyto(ph[r, sh:], src)
        else:
            np.multiply(src, np.equal(mf[:n - sh], j), out=ph[r, sh:])
        written[r] = True
    for r in range(s):
        if not written[r]:
            ph[r] = 0
    return ph


def _pool_grad(g: np.ndarray, ih, iw, geo, pads, gx: np.ndarray) -> None:
    """Adjoint of the separable pooling (W, then H) of a block of planes g [m, 1, oh, ow] into gx
    [m, 1, H, W]: ih [m, 1, oh, ow] and iw [m, 1, Hp, ow] are the tap indices of a max (None: sums).

    Works on zero-padded flat arrays and by phase (see _phase_scatter): along H into rows
    (phase rh, q) of the padded input, then along W, then one strided copy per phase pair into gx."""
    ks, st, _, dl, (oh, ow) = geo
    m, h, w = g.shape[0], gx.shape[2], gx.shape[3]
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    (sh, sw), (lh, lw) = st, (-(-hp // st[0]), -(-wp // st[1]))
    gp = np.zeros((m, lh, lw), g.dtype)
    gp[:, :oh, :ow] = g[:, 0]
    mh = None
    if ih is not None:
        mh = np.full((m, lh, lw), 255, np.uint8)
        mh[:, :oh, :ow] = ih[:, 0]
    g1 = _phase_scatter(gp.reshape(-1), None if mh is None else mh.reshape(-1), ks[0], sh, dl[0], lw)
    mw = None
    if iw is not None:                          # the W indices of the rows, in g1's (phase, plane, q) order
        mw = np.full((sh, m, lh, lw), 255, np.uint8)
        for rh in range(sh):
            rows = iw[:, 0, rh::sh]
            mw[rh, :, :rows.shape[1], :ow] = rows
    g2 = _phase_scatter(g1.reshape(-1), None if mw is None else mw.reshape(-1), ks[1], sw, dl[1], 1)
    g2 = g2.reshape(sw, sh, m, lh, lw)
    (top, _), (left, _) = pads
    for rh in range(sh):
        y0 = (rh - top) % sh                    # first row of gx in phase rh, and its q
        ny, qh = len(range(y0, h, sh)), (y0 + top) // sh
        for rw in range(sw):
            x0 = (rw - left) % sw
            nx, qw = len(range(x0, w, sw)), (x0 + left) // sw
            gx[:, 0, y0::sh, x0::sw] = g2[rw, rh, :, qh:qh + ny, qw:qw + nx]


def _tiles(geo, x_sp) -> bool:
    """Whether the windows tile the input exactly (kernel = stride, no dilation, no padding, sizes divisible):
    each input position then belongs to one window, and the max's gradient is a plain assignment."""
    ks, st, pd, dl, out = geo
    return all(k == s and d == 1 and p == 0 and o * k == i for k, s, p, d, o, i in zip(ks, st, pd, dl, out, x_sp))


def _tile_grad(g: np.ndarray, ih, iw, ks, gx: np.ndarray) -> None:
    """The max's gradient for tiling windows (_tiles) of a block of planes g [m, 1, oh, ow] into gx
    [m, 1, H, W]: tap (a, b) of every window gets g where the first maximum is (a, b) — one compare and
    one multiply per tap into gx's strided view, no zero fill and no scatter."""
    (kh, kw), (m, _, oh, ow) = ks, g.shape
    g5, g3 = gx.reshape(m, oh, kh, ow, kw), g[:, 0]
    for a in range(kh):
        rows = np.equal(ih[:, 0], a) if ih is not None else None
        for b in range(kw):
            if iw is None:
                mask = rows
            else:
                mask = np.equal(iw[:, 0, a::kh], b)
                if rows is not None:
                    mask &= rows
            if mask is None:
                np.copyto(g5[:, :, a, :, b], g3)
            else:
                np.multiply(g3, mask, out=g5[:, :, a, :, b])


def _shifts_out() -> bool:
    """Whether NumPy's left_shift gives 0 for a shift by the whole width or more (so _tile_grad_pairs can
    shift a value out), on a little-endian machine (where a uint64 holds two float32 values in order)."""
    if sys.byteorder != "little":
        return False
    shift = np.resize(np.array([0, 32, 64, 96], np.uint8), 4099)
    r = np.left_shift(np.full(4099, 7, np.uint32), shift, dtype=np.uint64)
    return bool((r[shift >= 64] == 0).all() and (r[shift == 32] == 7 << 32).all())


_PAIRS = _shifts_out()


@functools.lru_cache(maxsize=64)
def _row_phase(h: int, ow: int, kh: int) -> np.ndarray:
    """[h, ow] uint8: each row's index inside its window of kh rows."""
    return np.ascontiguousarray(np.broadcast_to((np.arange(h) % kh).astype(np.uint8)[:, None], (h, ow)))


def _tile_grad_pairs(g: np.ndarray, ih, iw: np.ndarray, kh: int, gx: np.ndarray) -> None:
    """_tile_grad for float32 windows two wide (when _PAIRS): each pair of gx's values along W is one
    uint64, the gradient's bits shifted into the half that holds the window's first maximum, or shifted
    out (a zero) in the rows that do not hold it: one contiguous pass writes gx (_tile_grad's strided
    writes per tap took twice as long: VGG's 32×32×32×32 pool 2.25 -> 1.1 ms)."""
    m, _, oh, ow = g.shape
    h = oh * kh
    shift = np.multiply(iw[:, 0], 32, dtype=np.uint8)              # [m, h, ow]: 0 or 32
    if ih is not None:
        away = np.not_equal(np.repeat(ih[:, 0], kh, axis=1), _row_phase(h, ow, kh)).view(np.uint8)
        away <<= 6                                                  # 64: shifted out
        shift |= away
    up = g[:, 0].view(np.uint32)
    if kh > 1:
        up = np.repeat(up, kh, axis=1)
    np.left_shift(up, shift, dtype=np.uint64, out=gx.reshape(m, h, ow * 2).view(np.uint64))


def _pool_setup(a, x: np.ndarray):
    """Pooling geometry, the padding that keeps every window inside, the padded size, and x as planes."""
    geo = pool_geometry(a, x.shape[2:])
    pads = _pool_pads(x.shape[2:], geo)
    return geo, pads, _padded(x.shape[2:], pads), _planes(x)


@kernel("max_pool2d")
def max_pool2d(ctx: Ctx, x: np.ndarray):
    geo, pads, (hp, wp), xs = _pool_setup(ctx.attrs, x)
    ks, st, pd, dl, out = geo
    n = xs.shape[0]
    track = ctx.need(0)
    y = np.empty((n, 1) + tuple(out), x.dtype)
    # separable: max along W, then along H; the first maximum in row-major order wins, as in PyTorch
    iw = np.empty((n, 1, hp, out[1]), np.uint8) if track and ks[1] > 1 else None
    ih = np.empty((n, 1) + tuple(out), np.uint8) if track and ks[0] > 1 else None

    def part(lo: int, hi: int):
        xp = _pad(xs[lo:hi], pads, -np.inf)
        r = np.empty((hi - lo, 1, hp, out[1]), x.dtype)
        _max_along(xp, 3, ks[1], st[1], dl[1], r, None if iw is None else iw[lo:hi])
        _max_along(r, 2, ks[0], st[0], dl[0], y[lo:hi], None if ih is None else ih[lo:hi])

    _pool_run(part, n, hp * wp * x.itemsize)

    def backward(gy: np.ndarray):
        if not ctx.need(0):
            return None
        gys = _planes(gy)
        gx = np.empty(x.shape, gy.dtype)
        gxs = _planes(gx)

        tiles = _tiles(geo, x.shape[2:])
        pairs = tiles and _PAIRS and ks[1] == 2 and gy.dtype == np.float32 == gx.dtype

        def part_back(lo: int, hi: int):
            mh, mw = None if ih is None else ih[lo:hi], None if iw is None else iw[lo:hi]
            if pairs:
                _tile_grad_pairs(gys[lo:hi], mh, mw, ks[0], gxs[lo:hi])
            elif tiles:
                _tile_grad(gys[lo:hi], mh, mw, ks, gxs[lo:hi])
            else:
                _pool_grad(gys[lo:hi], mh, mw, geo, pads, gxs[lo:hi])

        _pool_run(part_back, n, hp * wp * gy.itemsize)
        return gx

    return y.reshape(x.shape[:2] + tuple(out)), backward


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
    geo, pads, (hp, wp), xs = _pool_setup(ctx.attrs, x)
    ks, st, pd, dl, out = geo
    n = xs.shape[0]
    y = np.empty((n, 1) + tuple(out), x.dtype)
    div = _avg_divisor(ctx.attrs, x, geo, y.dtype)

    def part(lo: int, hi: int):
        # separable window sums: along H first (contiguous rows), then along W
        xp = _pad(xs[lo:hi], pads, 0.0)
        taps = _taps(xp, 2, ks[0], st[0], 1, out[0])
        r = taps[0].copy()
        for v in taps[1:]:
            r += v
        taps = _taps(r, 3, ks[1], st[1], 1, out[1])
        yb = y[lo:hi]
        np.copyto(yb, taps[0])
        for v in taps[1:]:
            yb += v
        yb /= div

    _pool_run(part, n, hp * wp * x.itemsize)

    def backward(gy: np.ndarray):
        gys = _planes(gy)
        gx = np.empty(x.shape, gy.dtype)
        gxs = _planes(gx)

        def part_back(lo: int, hi: int):
            _pool_grad(gys[lo:hi] / div, None, None, geo, pads, gxs[lo:hi])

        _pool_run(part_back, n, hp * wp * gy.itemsize)
        return gx

    return y.reshape(x.shape[:2] + tuple(out)), backward


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


# --------------------------------------------------------------------------- pixel_shuffle, channel_shuffle

@kernel("pixel_shuffle")
def pixel_shuffle(ctx: Ctx, x):
    r = ctx.attrs.upscale_factor
    n, c, h, w = x.shape
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)

    def backward(gy):
        g = gy.reshape(n, c // (r * r), h, r, w, r).transpose(0, 1, 3, 5, 2, 4).reshape(x.shape)
        return (g if ctx.need(0) else None,)

    return y, backward


@kernel("channel_shuffle")
def channel_shuffle(ctx: Ctx, x):
    g = ctx.attrs.groups
    n, c = x.shape[:2]
    y = x.reshape(n, g, c // g, -1).swapaxes(1, 2).reshape(x.shape)

    def backward(gy):
        gx = gy.reshape(n, c // g, g, -1).swapaxes(1, 2).reshape(x.shape)
        return (gx if ctx.need(0) else None,)

    return y, backward
