"""Sequence layers: embedding and the recurrent layers rnn, lstm and gru.

The recurrent kernels work time-major and gate-major inside: the gate pre-activations of a layer-direction
live in one array [gates, T, N, H], so every per-step operand (a gate's [N, H] block) is contiguous. Per
layer and direction one (batched) GEMM projects the inputs of every step; the loop over time does only the
hidden-state GEMM and a few in-place elementwise updates into preallocated arrays. Backward through time
mirrors it: what does not depend on the running gradient (the gate derivatives) is computed for all steps at
once before the loop, and the weight gradients are GEMMs over all steps after it.

Tricks: sigmoid(z) = 0.5·tanh(z/2) + 0.5, so one tanh call covers every gate of a step once the sigmoid gates'
weights are pre-scaled by 0.5; LSTM gates are reordered internally to (o, i, f, g) so the sigmoid gates and
the gates driven by the cell gradient are each one block. Gradients are returned in PyTorch's layout.
"""
from __future__ import annotations

import numpy as np

from .. import threads
from .registry import Ctx, kernel


# -- embedding ---------------------------------------------------------------------------------------------

@kernel("embedding")
def embedding(ctx: Ctx, x: np.ndarray, weight: np.ndarray):
    num, dim = weight.shape
    idx = np.asarray(x)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num:
            raise IndexError(f"embedding: token index {lo if lo < 0 else hi} is out of range for a table of "
                             f"{num} rows (valid indices 0..{num - 1})")
    y = np.take(weight, idx, axis=0)
    pad = ctx.attrs.padding_idx
    pad = None if pad is None else pad % num

    def backward(gy: np.ndarray):
        if not ctx.need(1):
            return None, None
        return None, scatter_rows(idx.reshape(-1), gy.reshape(-1, dim), num, skip=pad)

    return y, backward


def scatter_rows(idx: np.ndarray, rows: np.ndarray, num: int, skip: int | None = None) -> np.ndarray:
    """g[k] = sum of rows[j] with idx[j] == k, for a [num, dim] g (rows with idx == skip dropped).

    Sort-based: the first row of each distinct index is assigned with one fancy-index store; only the
    repeats (few, once the padding index is dropped) go through an unbuffered add on the flat array.
    """
    g = np.zeros((num, rows.shape[1]), rows.dtype)
    if skip is not None:
        keep = idx != skip
        if not keep.all():
            idx, rows = idx[keep], rows[keep]
    if idx.size == 0:
        return g
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    first = np.empty(s.size, bool)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    head = np.flatnonzero(first)
    g[s[head]] = np.take(rows, order[head], axis=0)
    if head.size < s.size:
        rest = np.flatnonzero(~first)
        dim = rows.shape[1]
        keys = (s[rest][:, None] * dim + np.arange(dim)).reshape(-1)
        np.add.at(g.reshape(-1), keys, np.take(rows, order[rest], axis=0).reshape(-1))
    return g


# -- recurrent layers ----------------------------------------------------------------------------------------

class _Prep:
    """One layer-direction's weights as [gates, H, ·] blocks in the kernels' gate order."""

    __slots__ = ("wi", "wh", "wxT", "whT", "bx", "bhn", "inv")

    def __init__(self, kind: str, w_ih, w_hh, b_ih, b_hh, hidden: int):
        h = hidden
        ng = w_ih.shape[0] // h
        perm = None
        nsig = 0
        if kind == "lstm":
            perm = np.r_[3 * h:4 * h, 0:3 * h]          # PyTorch i,f,g,o -> o,i,f,g
            nsig = 3
        elif kind == "gru":
            nsig = 2                                    # r, z are sigmoids; n is tanh
        self.inv = None if perm is None else np.argsort(perm)
        wi = w_ih if perm is None else w_ih[perm]
        wh = w_hh if perm is None else w_hh[perm]
        self.wi = wi.reshape(ng, h, -1)                 # [gates, H, in]  unscaled, for backward
        self.wh = wh.reshape(ng, h, h)                  # [gates, H, H]
        sc = None
        if nsig:
            sc = np.ones((ng, 1, 1), w_ih.dtype)
            sc[:nsig] = 0.5
        self.wxT = (self.wi * sc if sc is not None else self.wi).transpose(0, 2, 1)          # [gates, in, H]
        self.whT = np.ascontiguousarray((self.wh * sc if sc is not None else self.wh).transpose(0, 2, 1))
        self.bx = self.bhn = None
        if b_ih is not None:
            if kind == "gru":
                bx = b_ih.copy()
                bx[:2 * h] += b_hh[:2 * h]
                self.bhn = b_hh[2 * h:]
            else:
                bx = b_ih + b_hh
                if perm is not None:
                    bx = bx[perm]
            bx = bx.reshape(ng, 1, h)
            self.bx = bx * sc if sc is not None else bx

    def unperm(self, g: np.ndarray) -> np.ndarray:
        """A gradient in the kernels' [gates, H, ...] layout back to PyTorch's [gates·H, ...] rows."""
        g = g.reshape((-1,) + g.shape[2:])
        return g if self.inv is None else g[self.inv]


def _steps(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


# Each direction keeps its states in hs [T+1, N, H]: the forward direction at hs[0] = h0, hs[t+1] = h_t;
# the reverse direction at hs[T] = h0, hs[t] = h_t. So h_prev(t) = hs[t + op], h(t) = hs[t + oc].

def _offsets(reverse: bool) -> tuple[int, int]:
    return (0, 1) if reverse else (1, 0)               # (oc, op)


def _rnn_fwd(a, relu: bool, A, p: _Prep, hs, reverse):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    pre_, whT = A[0], p.whT[0]
    z = np.empty((N, H), A.dtype)
    for t in _steps(T, reverse):
        pre = pre_[t]
        np.matmul(hs[t + op], whT, out=z)
        pre += z
        if relu:
            np.maximum(pre, 0, out=hs[t + oc])
        else:
            np.tanh(pre, out=hs[t + oc])
    return None


def _rnn_bwd(a, relu: bool, A, cache, p: _Prep, hs, dy, dhT, reverse):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    hcur = hs[oc:oc + T]
    dz = np.empty_like(A)                              # holds act'(pre), turned into dz in place
    d = dz[0]
    if relu:
        np.greater(hcur, 0, out=d, casting="unsafe")
    else:
        np.multiply(hcur, hcur, out=d)
        np.subtract(1, d, out=d)
    dh = np.zeros((N, H), A.dtype) if dhT is None else dhT.copy()
    wh = p.wh[0]
    for t in _steps(T, not reverse):
        if dy is not None:
            dh += dy[t]
        dzt = d[t]
        dzt *= dh
        np.matmul(dzt, wh, out=dh)
    return dz, dz, dh, None


def _lstm_fwd(a, _, A, p: _Prep, hs, reverse, cs):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    dt = A.dtype
    tc = np.empty((T, N, H), dt)                       # tanh(c_t)
    whT = p.whT
    z = np.empty((4, N, H), dt)
    ig = np.empty((N, H), dt)
    o_, i_, f_, g_ = A
    s_ = A[:3]
    for t in _steps(T, reverse):
        np.matmul(hs[t + op], whT, out=z)
        at = A[:, t]
        at += z
        np.tanh(at, out=at)
        s = s_[:, t]
        s *= 0.5
        s += 0.5
        c = cs[t + oc]
        np.multiply(f_[t], cs[t + op], out=c)
        np.multiply(i_[t], g_[t], out=ig)
        c += ig
        np.tanh(c, out=tc[t])
        np.multiply(o_[t], tc[t], out=hs[t + oc])
    return tc


def _lstm_bwd(a, _, A, tc, p: _Prep, hs, dy, dhT, reverse, cs, dcT):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    dt = A.dtype
    o, i, f, g = A
    # m holds, in dz's layout (o, i, f, g), what multiplies dh (gate o) or dc (gates i, f, g) to give dz;
    # the loop turns it into dz in place.
    m = np.empty_like(A)
    ms = m[:3]
    np.subtract(1, A[:3], out=ms)
    ms *= A[:3]                                          # sigmoid' of o, i, f
    m[0] *= tc
    m[1] *= g
    m[2] *= cs[op:op + T]
    mg = m[3]
    np.multiply(g, g, out=mg)
    np.subtract(1, mg, out=mg)
    mg *= i
    ah = np.multiply(tc, tc)                             # dc += dh * o * (1 - tanh(c)^2)
    np.subtract(1, ah, out=ah)
    ah *= o
    dh = np.zeros((N, H), dt) if dhT is None else dhT.copy()
    dcn = np.zeros((N, H), dt) if dcT is None else dcT.copy()
    dc = np.empty((N, H), dt)
    z = np.empty((4, N, H), dt)
    m_o, m_ifg = m[0], m[1:]
    wh = p.wh
    for t in _steps(T, not reverse):
        if dy is not None:
            dh += dy[t]
        m_o[t] *= dh
        np.multiply(dh, ah[t], out=dc)
        dc += dcn
        mt = m_ifg[:, t]
        mt *= dc
        np.multiply(dc, f[t], out=dcn)
        np.matmul(m[:, t], wh, out=z)
        np.add.reduce(z, axis=0, out=dh)
    return m, m, dh, dcn


def _gru_fwd(a, _, A, p: _Prep, hs, reverse):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    dt = A.dtype
    hn = np.empty((T, N, H), dt)                       # W_hn h + b_hn, kept for backward
    whT, bhn = p.whT, p.bhn
    hh = np.empty((3, N, H), dt)
    tmp = np.empty((N, H), dt)
    r_, z_, n_ = A
    rz_ = A[:2]
    hh_rz, hh_n = hh[:2], hh[2]
    for t in _steps(T, reverse):
        hp = hs[t + op]
        np.matmul(hp, whT, out=hh)
        rz = rz_[:, t]
        rz += hh_rz
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        if bhn is not None:
            np.add(hh_n, bhn, out=hn[t])
        else:
            hn[t] = hh_n
        n = n_[t]
        np.multiply(r_[t], hn[t], out=tmp)
        n += tmp
        np.tanh(n, out=n)
        h = hs[t + oc]
        np.subtract(hp, n, out=h)
        h *= z_[t]
        h += n
    return hn


def _gru_bwd(a, _, A, hn, p: _Prep, hs, dy, dhT, reverse):
    T, N, H = A.shape[1:]
    oc, op = _offsets(reverse)
    dt = A.dtype
    r, z, n = A
    dxw = np.empty_like(A)                             # gradient of the input-projection pre-activations
    dhh = np.empty_like(A)                             # ... and of the hidden GEMM's outputs (r, z, n)
    # multipliers, stored where the loop turns them into gradients in place
    mn, mr, mz, dhn = dxw[2], dhh[0], dhh[1], dhh[2]
    tmp = np.subtract(1, z)
    np.subtract(hs[op:op + T], n, out=mz)
    mz *= z
    mz *= tmp                                          # dz_z = dh * (h_prev - n) z (1 - z)
    np.multiply(n, n, out=mn)
    np.subtract(1, mn, out=mn)
    mn *= tmp                                          # dz_n = dh * (1 - z)(1 - n^2)
    np.subtract(1, r, out=tmp)
    np.multiply(hn, r, out=mr)
    mr *= tmp                                          # dz_r = dz_n * hn r (1 - r)
    del tmp
    dh = np.zeros((N, H), dt) if dhT is None else dhT.copy()
    tmp = np.empty((N, H), dt)
    z3 = np.empty((3, N, H), dt)
    wh = p.wh
    for t in _steps(T, not reverse):
        if dy is not None:
            dh += dy[t]
        dn = mn[t]
        dn *= dh
        mz[t] *= dh
        mr[t] *= dn
        np.multiply(dn, r[t], out=dhn[t])
        np.multiply(dh, z[t], out=tmp)
        np.matmul(dhh[:, t], wh, out=z3)
        np.add.reduce(z3, axis=0, out=dh)
        dh += tmp
    dxw[:2] = dhh[:2]
    return dxw, dhh, dh, None


_CELLS = {"rnn": (_rnn_fwd, _rnn_bwd, 1), "lstm": (_lstm_fwd, _lstm_bwd, 4), "gru": (_gru_fwd, _gru_bwd, 3)}


def _recurrent(kind: str, ctx: Ctx, x: np.ndarray, h0, c0, params: tuple):
    """The layer, forward and backward, with one BLAS thread when its largest GEMM (the input projection
    or a weight gradient over all steps) is small; the time loop's GEMMs are limited on their own."""
    a = ctx.attrs
    width = max(x.shape[-1], (2 if a.bidirectional else 1) * a.hidden_size)
    biggest = (x.shape[0] * x.shape[1], width, _CELLS[kind][2] * a.hidden_size)
    with threads.gemm(*biggest):
        out, back = _recurrent_run(kind, ctx, x, h0, c0, params)

    def backward(grads):
        with threads.gemm(*biggest):
            return back(grads)

    return out, backward


def _gates_last(dz: np.ndarray) -> np.ndarray:
    """A gate gradient [gates, T, N, H] as [T·N, gates·H] rows (contiguous)."""
    g, t, n, h = dz.shape
    return np.ascontiguousarray(dz.transpose(1, 2, 0, 3)).reshape(t * n, g * h)


def _recurrent_run(kind: str, ctx: Ctx, x: np.ndarray, h0, c0, params: tuple):
    a = ctx.attrs
    fwd, bwd, ng = _CELLS[kind]
    lstm = kind == "lstm"
    relu = kind == "rnn" and a.nonlinearity == "relu"
    L, D, H = a.num_layers, 2 if a.bidirectional else 1, a.hidden_size
    per = 4 if a.bias else 2
    dt = x.dtype
    x0 = np.ascontiguousarray(x.transpose(1, 0, 2) if a.batch_first else x)
    T, N, _ = x0.shape
    p_drop = a.dropout if ctx.training and L > 1 else 0.0
    h_n = np.empty((L * D, N, H), dt)
    c_n = np.empty((L * D, N, H), dt) if lstm else None
    layers = []                                        # per layer: (its input, [per direction state], dropout mask)
    inp = x0
    for l in range(L):
        y = np.empty((T, N, D * H), dt) if D == 2 else None
        dirs = []
        for d in range(D):
            k = l * D + d
            w = params[k * per:(k + 1) * per]
            p = _Prep(kind, w[0], w[1], w[2] if a.bias else None, w[3] if a.bias else None, H)
            A = np.matmul(inp.reshape(T * N, -1), p.wxT)   # [gates, T·N, H]: every step's input projection
            if p.bx is not None:
                A += p.bx
            A = A.reshape(ng, T, N, H)
            rev = d == 1
            start = T if rev else 0
            hs = np.empty((T + 1, N, H), dt)
            hs[start] = 0 if h0 is None else h0[k]
            extra = ()
            if lstm:
                cs = np.empty((T + 1, N, H), dt)
                cs[start] = 0 if c0 is None else c0[k]
                extra = (cs,)
            with threads.gemm(N, H, ng * H):             # the time loop: small GEMMs, one thread
                cache = fwd(a, relu, A, p, hs, rev, *extra)
            oc = 0 if rev else 1
            if D == 2:
                y[:, :, d * H:(d + 1) * H] = hs[oc:oc + T]
            else:
                y = hs[oc:oc + T]                      # one direction: its states are the layer's output
            h_n[k] = hs[T - start]
            if lstm:
                c_n[k] = cs[T - start]
            dirs.append((p, A, cache, hs, extra))
        mask = None
        nxt = y
        if p_drop and l < L - 1:
            mask = (ctx.rng.random(y.shape) >= p_drop).astype(dt)
            mask *= 1.0 / (1.0 - p_drop)
            nxt = y * mask
        layers.append((inp, dirs, mask))
        inp = nxt
    want_out = len(ctx.wanted) < 1 or ctx.wanted[0]
    out = (np.ascontiguousarray(y.transpose(1, 0, 2)) if a.batch_first else y) if want_out else None
    nin = 3 if lstm else 2

    def backward(grads):
        gout, gh = grads[0], grads[1]
        gc = grads[2] if lstm else None
        dY = None if gout is None else (gout.transpose(1, 0, 2) if a.batch_first else gout)
        pg: list = [None] * len(params)
        need_h0 = h0 is not None and ctx.need(1)
        need_c0 = lstm and c0 is not None and ctx.need(2)
        dh0 = np.empty_like(h0) if need_h0 else None
        dc0 = np.empty_like(c0) if need_c0 else None
        dx = None
        for l in range(L - 1, -1, -1):
            inp_l, dirs, _ = layers[l]
            need_dx = l > 0 or ctx.need(0)
            dX = None
            x2 = inp_l.reshape(T * N, -1)
            for d, (p, A, cache, hs, extra) in enumerate(dirs):
                k = l * D + d
                rev = d == 1
                dy = None if dY is None else dY[:, :, d * H:(d + 1) * H]
                dhT = None if gh is None else gh[k]
                more = (None if gc is None else gc[k],) if lstm else ()
                with threads.gemm(N, ng * H, H):
                    dzx, dzh, dh_init, dc_init = bwd(a, relu, A, cache, p, hs, dy, dhT, rev, *extra, *more)
                if need_h0:
                    dh0[k] = dh_init
                if need_c0:
                    dc0[k] = dc_init
                base = nin + k * per
                # the gates side by side, [T·N, gates·H] (one copy): each gradient below is then one GEMM
                # instead of one per gate (the LSTM's weight gradients and input gradient: 2.3 -> 1.6 ms)
                zx = _gates_last(dzx)
                zh = zx if dzh is dzx else _gates_last(dzh)
                if ctx.need(base):
                    pg[k * per] = p.unperm((zx.T @ x2).reshape(ng, H, -1))
                if ctx.need(base + 1):
                    op = 1 if rev else 0
                    pg[k * per + 1] = p.unperm((zh.T @ hs[op:op + T].reshape(T * N, H)).reshape(ng, H, H))
                if a.bias and (ctx.need(base + 2) or ctx.need(base + 3)):
                    bi = zx.sum(axis=0).reshape(ng, H)
                    bh = bi.copy() if zh is zx else zh.sum(axis=0).reshape(ng, H)
                    pg[k * per + 2] = p.unperm(bi) if ctx.need(base + 2) else None
                    pg[k * per + 3] = p.unperm(bh) if ctx.need(base + 3) else None
                if need_dx:
                    d = zx @ p.wi.reshape(ng * H, -1)
                    if dX is None:
                        dX = d
                    else:
                        dX += d
            if l > 0:
                dY = dX.reshape(T, N, -1)
                below = layers[l - 1][2]                # the dropout on the layer below's output
                if below is not None:
                    dY *= below
            elif need_dx:
                dX = dX.reshape(T, N, -1)
                dx = np.ascontiguousarray(dX.transpose(1, 0, 2)) if a.batch_first else dX
        return (dx, dh0, dc0, *pg) if lstm else (dx, dh0, *pg)

    return ((out, h_n, c_n) if lstm else (out, h_n)), backward


@kernel("rnn")
def rnn(ctx: Ctx, x: np.ndarray, h0: np.ndarray | None, *params: np.ndarray):
    return _recurrent("rnn", ctx, x, h0, None, params)


@kernel("lstm")
def lstm(ctx: Ctx, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, *params: np.ndarray):
    return _recurrent("lstm", ctx, x, h0, c0, params)


@kernel("gru")
def gru(ctx: Ctx, x: np.ndarray, h0: np.ndarray | None, *params: np.ndarray):
    return _recurrent("gru", ctx, x, h0, None, params)
