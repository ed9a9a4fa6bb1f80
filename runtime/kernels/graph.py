"""Graph kernels on dense adjacency matrices ([V, V] or [N, V, V]); see compiler/ops/graph.py for semantics.

gat_conv runs its masked softmax densely over [.., H, V, V] or, when at most GAT_EDGE_DENSITY of the
(i, j) pairs are connected (citation graphs), on the edge list with reduceat: same results, O(E·H·C).
"""
from __future__ import annotations

import numpy as np

from .attention import masked_softmax, softmax_backward
from .registry import Ctx, kernel, unbroadcast


def _adj(adj: np.ndarray, dtype) -> np.ndarray:
    return adj if adj.dtype == dtype else adj.astype(dtype)


def _graph_args(x: np.ndarray, adj: np.ndarray) -> None:
    """Refuse x [.., V, F] and adj [.., V, V] that do not fit (sizes that `check` could only see as symbols):
    NumPy would broadcast some of them into a wrongly shaped result instead of failing. The model turns the
    error into the op's shape rule, in its words (runtime/model.py, _kernel_error)."""
    v = x.shape[-2] if x.ndim >= 2 else None
    if adj.ndim < 2 or adj.shape[-1] != adj.shape[-2] or adj.shape[-1] != v:
        raise ValueError(f"adj of shape {adj.shape} does not fit x of shape {x.shape}")
    try:
        np.broadcast_shapes(x.shape[:-2], adj.shape[:-2])
    except ValueError:
        raise ValueError(f"x of shape {x.shape} and adj of shape {adj.shape} have different batch sizes") from None


def _t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


# --- gcn_conv -----------------------------------------------------------------------------------

@kernel("gcn_conv")
def gcn_conv(ctx: Ctx, x: np.ndarray, adj: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    _graph_args(x, adj)
    at = ctx.attrs
    loops, norm = at.add_self_loops, at.normalize
    A = _adj(adj, x.dtype)
    s = deg = None
    if norm:
        deg = A @ np.ones(A.shape[-1], A.dtype)             # row sums (a GEMV: faster than sum)
        if loops:
            deg += 1
        pos = deg > 0
        s = np.zeros_like(deg)
        np.divide(1.0, np.sqrt(deg, where=pos, out=np.ones_like(deg)), out=s, where=pos)  # deg^-1/2, 0 at 0
        sc = s[..., None]

    def prop(z: np.ndarray, transpose: bool = False) -> np.ndarray:
        """M z with M = S Â S (or Â): without forming Â = A + I."""
        zs = z * sc if norm else z
        y = (_t(A) if transpose else A) @ zs
        if loops:
            y += zs
        if norm:
            y *= sc
        return y

    xw_first = weight.shape[0] < weight.shape[1]             # aggregate the narrower of X and X Wᵀ
    if xw_first:
        pin = x @ weight.T                                   # Z = X Wᵀ
        y = prop(pin)
    else:
        pin = prop(x)                                        # U = M X
        y = pin @ weight.T
    if bias is not None:
        y += bias

    def backward(gy: np.ndarray):
        out, fin = weight.shape
        gx = gw = ga = None
        gb = gy.reshape(-1, out).sum(axis=0) if bias is not None and ctx.need(3) else None
        if xw_first:
            gp = gy                                          # d/dZ of y = M Z
            if ctx.need(0) or ctx.need(2):
                gz = unbroadcast(prop(gy, transpose=True), x.shape[:-1] + (out,))
                gw = gz.reshape(-1, out).T @ x.reshape(-1, fin) if ctx.need(2) else None
                gx = gz @ weight if ctx.need(0) else None
        else:
            gw = gy.reshape(-1, out).T @ pin.reshape(-1, fin) if ctx.need(2) else None
            gp = gy @ weight if ctx.need(0) or ctx.need(1) else None   # d/dU of y = U Wᵀ
            if ctx.need(0):
                gx = unbroadcast(prop(gp, transpose=True), x.shape)
        if ctx.need(1) and _float(adj):
            base = x if not xw_first else pin                # y_pre = M base
            g = gp @ _t(base)                                # d/dM, [.., V, V]
            if norm:
                k = g * (A + np.eye(A.shape[-1], dtype=A.dtype) if loops else A)
                gs = (k @ sc)[..., 0] + (_t(k) @ sc)[..., 0]
                gdeg = np.where(pos, -0.5 * s ** 3 * gs, 0).astype(g.dtype)
                g *= sc
                g *= s[..., None, :]
                g += gdeg[..., None]
            ga = unbroadcast(g, adj.shape)
        return gx, ga, gw, gb

    return y, backward


# --- gat_conv -----------------------------------------------------------------------------------

GAT_EDGE_DENSITY = 0.1      # at most this fraction of (i, j) pairs connected: work on the edge list


def neighbour_mask(adj: np.ndarray, self_loops: bool) -> np.ndarray:
    """Bool [.., V, V]: adj != 0, with the diagonal set when self_loops."""
    m = adj != 0
    if self_loops:
        m |= np.eye(adj.shape[-1], dtype=bool)
    return m


def scatter_add(values: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """out[k] = Σ values[e] over e with index[e] == k (a stable sort and one reduceat, no np.add.at)."""
    out = np.zeros((size,) + values.shape[1:], dtype=values.dtype)
    if index.size:
        order = np.argsort(index, kind="stable")
        si = index[order]
        st, _ = _segments(si)
        out[si[st]] = np.add.reduceat(values[order], st, axis=0)
    return out


def _gat_dense(nb, hx3, ss, sd, slope, lead):
    """Masked softmax over [.., H, V, V]. hx3 [.., V, H, C], ss/sd [.., V, H] (node-major)."""
    dt = hx3.dtype
    h, v = hx3.shape[-2], hx3.shape[-3]
    hh = np.moveaxis(hx3, -2, -3)                            # [.., H, V, C] (a view)
    z = np.empty(lead + (h, v, v), dtype=dt)                 # [.., H, V(i), V(j)]
    np.add(np.moveaxis(sd, -1, -2)[..., :, None], np.moveaxis(ss, -1, -2)[..., None, :], out=z)
    neg = z < 0
    np.multiply(z, np.asarray(slope, dt), out=z, where=neg)  # LeakyReLU in place
    p = masked_softmax(z, [~nb[..., None, :, :]])            # z is overwritten by p
    o = np.moveaxis(p @ hh, -3, -2)                          # [.., V, H, C]

    def backward(go):
        goh = np.moveaxis(go, -2, -3)
        gz = softmax_backward(p, goh @ _t(hh))               # [.., H, V, V]
        np.multiply(gz, np.asarray(slope, dt), out=gz, where=neg)
        g_sd = np.moveaxis(gz.sum(axis=-1), -1, -2)          # [.., V, H]
        g_ss = np.moveaxis(gz.sum(axis=-2), -1, -2)
        return np.moveaxis(_t(p) @ goh, -3, -2), g_ss, g_sd

    return o, backward


def _gat_edges(nb, hx3, ss, sd, slope, lead):
    """The same on the edge list: segment softmax with reduceat over edges sorted by target."""
    dt = hx3.dtype
    v, h, c = hx3.shape[-3:]
    nbf = np.broadcast_to(nb, lead + (v, v)).reshape(-1, v)
    rows, cols = np.nonzero(nbf)                             # target row (n·V + i), neighbour j
    batched_x = hx3.ndim == 4
    src = (rows - rows % v) + cols if batched_x else cols    # rows of hx3.reshape(-1, H, C)
    dst = rows if batched_x else rows % v
    hxf, ssf, sdf = hx3.reshape(-1, h, c), ss.reshape(-1, h), sd.reshape(-1, h)
    n_x, n_out = hxf.shape[0], nbf.shape[0]
    o = np.zeros((n_out, h, c), dtype=dt)
    if not rows.size:
        return o.reshape(lead + (v, h, c)), lambda go: (np.zeros_like(hx3), np.zeros_like(ss), np.zeros_like(sd))
    e = sdf[dst] + ssf[src]                                  # [E, H]
    neg = e < 0
    np.multiply(e, np.asarray(slope, dt), out=e, where=neg)
    starts, seg = _segments(rows)
    e -= np.maximum.reduceat(e, starts, axis=0)[seg]
    np.exp(e, out=e)
    alpha = e
    alpha /= np.add.reduceat(e, starts, axis=0)[seg]
    hs = hxf[src]                                            # [E, H, C]
    o[rows[starts]] = np.add.reduceat(alpha[..., None] * hs, starts, axis=0)

    def backward(go):
        gt = go.reshape(-1, h, c)[rows]                      # [E, H, C]
        galpha = np.einsum("ehc,ehc->eh", gt, hs)
        ghx = scatter_add(alpha[..., None] * gt, src, n_x)
        galpha -= np.add.reduceat(alpha * galpha, starts, axis=0)[seg]
        galpha *= alpha                                      # d loss / d e
        np.multiply(galpha, np.asarray(slope, dt), out=galpha, where=neg)
        return (ghx.reshape(hx3.shape), scatter_add(galpha, src, n_x).reshape(ss.shape),
                scatter_add(galpha, dst, n_x).reshape(sd.shape))

    return o.reshape(lead + (v, h, c)), backward


@kernel("gat_conv")
def gat_conv(ctx: Ctx, x: np.ndarray, adj: np.ndarray, weight: np.ndarray, att_src: np.ndarray,
             att_dst: np.ndarray, bias: np.ndarray | None = None):
    _graph_args(x, adj)
    at = ctx.attrs
    h, c = at.heads, at.out_features
    dt = x.dtype
    v = x.shape[-2]
    hx3 = (x @ weight.T).reshape(x.shape[:-1] + (h, c))      # [.., V, H, C]
    ss = np.einsum("...vhc,hc->...vh", hx3, att_src[0])      # a_srcᵀ W x_j, [.., V, H]
    sd = np.einsum("...vhc,hc->...vh", hx3, att_dst[0])      # a_dstᵀ W x_i
    lead = np.broadcast_shapes(x.shape[:-2], adj.shape[:-2])
    nb = neighbour_mask(adj, at.add_self_loops)
    sparse = np.count_nonzero(nb) <= GAT_EDGE_DENSITY * nb.size
    o, core_backward = (_gat_edges if sparse else _gat_dense)(nb, hx3, ss, sd, at.negative_slope, lead)
    y = o.reshape(lead + (v, h * c)) if at.concat else o.mean(axis=-2)
    if bias is not None:
        y += bias

    def backward(gy: np.ndarray):
        gx = gw = gas = gad = None
        gb = gy.reshape(-1, gy.shape[-1]).sum(axis=0) if bias is not None and ctx.need(5) else None
        if not any(ctx.need(i) for i in (0, 2, 3, 4)):
            return gx, None, gw, gas, gad, gb
        if at.concat:
            go = gy.reshape(gy.shape[:-1] + (h, c))
        else:
            go = np.broadcast_to((gy * np.asarray(1.0 / h, dt))[..., None, :], o.shape)
        ghx, g_ss, g_sd = core_backward(go)
        ghx = unbroadcast(ghx, hx3.shape)
        g_ss, g_sd = unbroadcast(g_ss, ss.shape), unbroadcast(g_sd, sd.shape)
        if ctx.need(3):
            gas = (g_ss.reshape(-1, h)[..., None] * hx3.reshape(-1, h, c)).sum(axis=0)[None]
        if ctx.need(4):
            gad = (g_sd.reshape(-1, h)[..., None] * hx3.reshape(-1, h, c)).sum(axis=0)[None]
        ghx += g_ss[..., None] * att_src[0]
        ghx += g_sd[..., None] * att_dst[0]
        ghx = ghx.reshape(x.shape[:-1] + (h * c,))
        if ctx.need(2):
            gw = ghx.reshape(-1, h * c).T @ x.reshape(-1, x.shape[-1])
        if ctx.need(0):
            gx = ghx @ weight
        return gx, None, gw, gas, gad, gb                   # adj is a 0/non-0 pattern: no gradient

    return y, backward


# --- graph_aggregate ----------------------------------------------------------------------------

def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted key array: start index of each run and the run id of every element."""
    change = np.empty(keys.shape, dtype=bool)
    change[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return starts, np.cumsum(change) - 1


@kernel("graph_aggregate")
def graph_aggregate(ctx: Ctx, x: np.ndarray, adj: np.ndarray):
    _graph_args(x, adj)
    red = ctx.attrs.reduce
    A = _adj(adj, x.dtype)
    if red in ("sum", "mean"):
        y = A @ x
        inv = None
        if red == "mean":
            cnt = np.count_nonzero(adj, axis=-1).astype(x.dtype)
            inv = (1.0 / np.maximum(cnt, 1))[..., None]
            y *= inv

        def backward(gy: np.ndarray):
            g = gy * inv if inv is not None else gy
            gx = unbroadcast(_t(A) @ g, x.shape) if ctx.need(0) else None
            ga = None
            if ctx.need(1) and _float(adj):
                ga = g @ _t(x)
                if red == "mean":
                    ga *= adj != 0                           # the neighbour count has no gradient
                ga = unbroadcast(ga, adj.shape)
            return gx, ga

        return y, backward

    # max: over the edge list (rows of nonzero() come sorted by target node), one reduceat
    lead = np.broadcast_shapes(x.shape[:-2], adj.shape[:-2])
    v, f = x.shape[-2], x.shape[-1]
    ab = np.broadcast_to(A, lead + (v, v)).reshape(-1, v)   # [(N·)V, V]
    rows, cols = np.nonzero(ab)                              # target (n·V + i), neighbour j
    wts = ab[rows, cols]
    src = cols + (rows // v) * v if x.ndim == 3 else cols   # row of x.reshape(-1, F) that sends
    xf = x.reshape(-1, f)
    msg = xf[src]
    msg *= wts[:, None]                                      # [E, F]
    y = np.zeros((ab.shape[0], f), dtype=x.dtype)
    if rows.size:
        starts, seg = _segments(rows)
        mx = np.maximum.reduceat(msg, starts, axis=0)        # [targets with neighbours, F]
        y[rows[starts]] = mx
    y = y.reshape(lead + (v, f))

    def backward(gy: np.ndarray):
        gx = ga = None
        want_a = ctx.need(1) and _float(adj)
        if not rows.size:
            return (np.zeros_like(x) if ctx.need(0) else None), (np.zeros_like(adj) if want_a else None)
        win = (msg == mx[seg]).astype(x.dtype)               # the maximal messages; ties share the gradient
        ties = np.add.reduceat(win, starts, axis=0)
        win /= ties[seg]
        gmsg = gy.reshape(-1, f)[rows]
        gmsg *= win                                          # d loss / d message, [E, F]
        if want_a:
            gab = np.zeros(ab.shape, dtype=x.dtype)
            gab[rows, cols] = np.einsum("ef,ef->e", gmsg, xf[src])
            ga = unbroadcast(gab.reshape(lead + (v, v)), adj.shape)
        if ctx.need(0):
            gmsg *= wts[:, None]
            order = np.argsort(src, kind="stable")           # scatter-add by sender via sorted runs
            ss = src[order]
            st, _ = _segments(ss)
            gxf = np.zeros_like(xf)
            gxf[ss[st]] = np.add.reduceat(gmsg[order], st, axis=0)
            gx = gxf.reshape(x.shape)
        return gx, ga

    return y, backward
