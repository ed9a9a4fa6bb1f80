"""Activation functions: forward and vector-Jacobian products in NumPy.

Habits: work in the input's dtype (Python-float constants only, so float32 stays float32), write
into fresh buffers with `out=` instead of chaining temporaries, avoid masked writes
(`np.where`, boolean indexing) on hot paths — multiplying by a 0/1 mask is several times faster.
"""
from __future__ import annotations

import math

import numpy as np

from .. import parallel
from .registry import Ctx, kernel


def _zeros_backward(ctx: Ctx, x: np.ndarray):
    def backward(gy):
        return np.zeros_like(x) if ctx.need(0) else None
    return backward


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), accurate in both tails (exp overflow to inf gives exactly 0)."""
    s = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(s, out=s)
    s += 1
    return np.reciprocal(s, out=s)


def _rank0_safe(fn):
    """Run an elementwise kernel on a rank-0 input as a 1-element vector and give back rank 0.

    NumPy ufuncs return a scalar, not an array, for 0-d operands, so the kernels' in-place `out=`
    steps would fail on the output of `mean` or `sum` (issue 13)."""
    def wrapper(ctx: Ctx, x: np.ndarray):
        if x.ndim:
            return fn(ctx, x)
        y, bwd = fn(ctx, x.reshape(1))

        def backward(gy):
            g = bwd(np.reshape(gy, 1))
            return None if g is None else g.reshape(())
        return y.reshape(()), (backward if bwd is not None else None)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _mask(cond: np.ndarray, dtype) -> np.ndarray:
    return cond.astype(dtype)


def _split_flat(f, out: np.ndarray, *ins: np.ndarray) -> bool:
    """f(*input pieces, output piece) over pieces of the flattened arrays, split over the threads
    (parallel.run). Only for C-contiguous arrays of out's shape: False (nothing done) otherwise."""
    if not out.flags.c_contiguous or not all(a.shape == out.shape and a.flags.c_contiguous for a in ins):
        return False
    nbytes = out.nbytes + sum(a.nbytes for a in ins)
    t = parallel.threads_for(nbytes)
    if not parallel.splits(nbytes, t):
        f(*ins, out)
        return True
    flat, of = [a.reshape(-1) for a in ins], out.reshape(-1)

    def part(lo: int, hi: int):
        f(*(a[lo:hi] for a in flat), of[lo:hi])

    parallel.run(part, of.size, nbytes, threads=t)
    return True


def _relu_fwd(x: np.ndarray, y: np.ndarray) -> None:
    np.maximum(x, 0, out=y)


def _relu_bwd(gy: np.ndarray, y: np.ndarray, gx: np.ndarray) -> None:
    np.multiply(gy, y > 0, out=gx)


@kernel("relu")
@_rank0_safe
def relu(ctx: Ctx, x: np.ndarray):
    y = np.empty_like(x) if x.dtype.kind == "f" else None
    if y is None or not _split_flat(_relu_fwd, y, x):
        y = np.maximum(x, 0)

    def backward(gy):
        if not ctx.need(0):
            return None
        gx = np.empty(y.shape, gy.dtype) if gy.dtype.kind == "f" else None
        if gx is None or not _split_flat(_relu_bwd, gx, gy, y):
            gx = np.multiply(gy, y > 0)
        return gx
    return y, backward


@kernel("leaky_relu")
@_rank0_safe
def leaky_relu(ctx: Ctx, x: np.ndarray):
    slope = float(ctx.attrs.negative_slope)
    y = np.multiply(x, slope)
    # x if x > 0 else slope·x  ==  max(x, slope·x) for slope <= 1, min(x, slope·x) otherwise
    (np.maximum if slope <= 1 else np.minimum)(x, y, out=y)

    def backward(gy):
        if not ctx.need(0):
            return None
        f = _mask(x > 0, gy.dtype)
        f *= 1.0 - slope
        f += slope
        f *= gy
        return f
    return y, backward


def _channel(w: np.ndarray, ndim: int) -> np.ndarray:
    """The slope reshaped to broadcast against the input (channel dim 1, or one shared value)."""
    if w.size == 1:
        return w.reshape(())
    return w.reshape((w.size,) + (1,) * (ndim - 2))


@kernel("prelu")
def prelu(ctx: Ctx, x: np.ndarray, weight: np.ndarray):
    ws = _channel(weight, x.ndim)
    y = np.maximum(x, 0)
    neg = np.minimum(x, 0)
    neg *= ws
    y += neg
    del neg

    def backward(gy):
        gx = gw = None
        if ctx.need(0):
            gx = _mask(x <= 0, gy.dtype)
            gx *= ws - 1
            gx += 1
            gx *= gy
        if ctx.need(1):
            neg = np.minimum(x, 0)
            if weight.size == 1:
                gw = np.asarray(np.vdot(np.ascontiguousarray(gy).reshape(-1), neg.reshape(-1)),
                                dtype=weight.dtype).reshape(1)
            else:
                n, c = x.shape[0], x.shape[1]
                gw = np.einsum("ncl,ncl->c", gy.reshape(n, c, -1), neg.reshape(n, c, -1))
        return gx, gw
    return y, backward


@kernel("sigmoid")
@_rank0_safe
def sigmoid(ctx: Ctx, x: np.ndarray):
    y = _sigmoid(x)

    def backward(gy):
        if not ctx.need(0):
            return None
        f = np.subtract(1, y)
        f *= y
        f *= gy
        return f
    return y, backward


@kernel("tanh")
@_rank0_safe
def tanh(ctx: Ctx, x: np.ndarray):
    y = np.tanh(x)

    def backward(gy):
        if not ctx.need(0):
            return None
        f = np.multiply(y, y)
        np.subtract(1, f, out=f)
        f *= gy
        return f
    return y, backward


@kernel("sign")
@_rank0_safe
def sign(ctx: Ctx, x: np.ndarray):
    return np.sign(x), _zeros_backward(ctx, x)


@kernel("step")
@_rank0_safe
def step(ctx: Ctx, x: np.ndarray):
    return _mask(x > 0, x.dtype), _zeros_backward(ctx, x)


@kernel("silu")
@_rank0_safe
def silu(ctx: Ctx, x: np.ndarray):
    s = _sigmoid(x)
    y = np.multiply(x, s)

    def backward(gy):
        if not ctx.need(0):
            return None
        f = np.subtract(1, s)              # s · (1 + x · (1 − s))
        f *= x
        f += 1
        f *= s
        f *= gy
        return f
    return y, backward


@kernel("softplus")
@_rank0_safe
def softplus(ctx: Ctx, x: np.ndarray):
    beta, threshold = float(ctx.attrs.beta), float(ctx.attrs.threshold)
    z = np.multiply(x, beta) if beta != 1 else x
    # softplus(z) = max(z, 0) + log1p(exp(-|z|)), stable for every z
    y = np.abs(z)
    np.negative(y, out=y)
    np.exp(y, out=y)
    np.log1p(y, out=y)
    y += np.maximum(z, 0)
    if beta != 1:
        y /= beta
    # PyTorch returns x itself where beta·x > threshold. Above -log(eps) the two agree to the last
    # bit of the dtype, so the masked blend is only needed for a small threshold.
    exact = threshold < -math.log(np.finfo(x.dtype).eps)
    above = z > threshold if exact else None
    m = _mask(above, x.dtype) if exact else None
    if exact:                               # x itself, not y + (x - y): y can be huge (a small beta)
        np.copyto(y, x, where=above)

    def backward(gy):
        if not ctx.need(0):
            return None
        # sigmoid(beta·x) = 1 − exp(−beta·softplus)
        f = np.multiply(y, -beta)
        np.expm1(f, out=f)
        np.negative(f, out=f)
        if exact:                           # 1 above the threshold
            d = np.subtract(1, f)
            d *= m
            f += d
        f *= gy
        return f
    return y, backward


# Numerical Recipes' erfc (fractional error < 1.2e-7 everywhere), so the normal CDF keeps full
# float32 relative precision even deep in the left tail; NumPy has no erf of its own.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
         1.48851587, -0.82215223, 0.17087277)
_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)
_SQRT_2_PI = math.sqrt(2 / math.pi)


def _normal_cdf(x: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """Φ(x) = erfc(−x/√2) / 2, elementwise, in x's dtype (`scratch`: a spare buffer of x's shape)."""
    t = np.abs(x)
    t *= 0.5 * _SQRT1_2
    t += 1
    np.reciprocal(t, out=t)                 # t = 1 / (1 + |x| / (2√2))
    p = np.multiply(t, _ERFC[-1])
    for c in _ERFC[-2:0:-1]:
        p += c
        p *= t
    p += _ERFC[0] + math.log(0.5)           # the final halving folded into the exponent
    sq = np.multiply(x, x, out=scratch)
    sq *= 0.5
    p -= sq                                 # z² with z = |x|/√2
    np.exp(p, out=p)
    p *= t                                  # h = erfc(|x|/√2) / 2 = Φ(−|x|)
    # Φ(x) = h for x < 0 and 1 − h for x ≥ 0, i.e. |[x ≥ 0] − h| (exact h in the left tail)
    np.subtract(x >= 0, p, out=p)
    return np.abs(p, out=p)


@kernel("gelu")
@_rank0_safe
def gelu(ctx: Ctx, x: np.ndarray):
    if ctx.attrs.approximate == "tanh":
        k = 0.044715
        u = np.multiply(x, x)
        u *= k
        u += 1
        u *= x
        u *= _SQRT_2_PI
        t = np.tanh(u, out=u)                # tanh(√(2/π)(x + 0.044715 x³))
        y = np.add(t, 1)
        y *= x
        y *= 0.5

        def backward(gy):
            if not ctx.need(0):
                return None
            # 0.5(1 + t) + 0.5 x (1 − t²) √(2/π) (1 + 3k x²)
            d = np.multiply(x, x)
            d *= 3 * k
            d += 1
            d *= x
            d *= 0.5 * _SQRT_2_PI
            s = np.multiply(t, t)
            np.subtract(1, s, out=s)
            d *= s
            d += 0.5
            s = np.multiply(t, 0.5, out=s)
            d += s
            d *= gy
            return d
        return y, backward

    y = np.empty_like(x)
    cdf = _normal_cdf(x, scratch=y)
    np.multiply(x, cdf, out=y)

    def backward(gy):
        if not ctx.need(0):
            return None
        d = np.multiply(x, x)               # Φ(x) + x φ(x)
        d *= -0.5
        np.exp(d, out=d)
        d *= _INV_SQRT_2PI
        d *= x
        d += cdf
        d *= gy
        return d
    return y, backward


@kernel("elu")
@_rank0_safe
def elu(ctx: Ctx, x: np.ndarray):
    alpha = float(ctx.attrs.alpha)
    e = np.minimum(x, 0)
    np.expm1(e, out=e)
    e *= alpha                              # alpha (exp(x) − 1) where x ≤ 0, 0 elsewhere
    y = np.maximum(x, 0)
    y += e

    def backward(gy):
        if not ctx.need(0):
            return None
        f = np.add(e, alpha)                # alpha·exp(x) where x ≤ 0, alpha where x > 0
        if alpha != 1:
            m = _mask(x > 0, gy.dtype)
            m *= 1 - alpha
            f += m
        f *= gy
        return f
    return y, backward


# --- softmax family ------------------------------------------------------------------------------

def _rowsum(a: np.ndarray, axis: int) -> np.ndarray:
    """Sum over `axis`, keepdims. einsum is several times faster than .sum for a short last axis."""
    if axis == a.ndim - 1:
        return np.einsum("...i->...", a)[..., None]
    return a.sum(axis=axis, keepdims=True)


def _rowdot(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """Sum over `axis` of a·b, keepdims, without a temporary for the last axis."""
    if axis == a.ndim - 1:
        return np.einsum("...i,...i->...", a, b)[..., None]
    return (a * b).sum(axis=axis, keepdims=True)


def _shifted(z: np.ndarray, axis: int) -> np.ndarray:
    """z minus a shift that keeps exp() finite: the global max when the whole tensor spans less
    than exp's safe range (two fast global reductions), the per-row max otherwise (slow for short rows)."""
    if z.size == 0:
        return z.copy()
    hi, lo = z.max(), z.min()
    if np.isfinite(hi) and np.isfinite(lo) and hi - lo < 0.8 * -math.log(np.finfo(z.dtype).tiny):
        return np.subtract(z, hi)
    return np.subtract(z, z.max(axis=axis, keepdims=True))


@kernel("softmax")
def softmax(ctx: Ctx, x: np.ndarray):
    axis = ctx.attrs.dim % max(x.ndim, 1) if x.ndim else None
    temp = float(ctx.attrs.temperature)
    if axis is None:                        # a scalar: softmax over one element
        y = np.ones_like(x)
        return y, _zeros_backward(ctx, x)
    z = np.divide(x, temp) if temp != 1 else x
    y = _shifted(z, axis)
    np.exp(y, out=y)
    y *= 1 / _rowsum(y, axis)               # one division per row, a multiply per element

    def backward(gy):
        if not ctx.need(0):
            return None
        gx = np.subtract(gy, _rowdot(gy, y, axis))      # y (g − Σ g·y) / T
        gx *= y
        if temp != 1:
            gx /= temp
        return gx
    return y, backward


@kernel("log_softmax")
def log_softmax(ctx: Ctx, x: np.ndarray):
    if not x.ndim:
        return np.zeros_like(x), _zeros_backward(ctx, x)
    axis = ctx.attrs.dim % x.ndim
    y = _shifted(x, axis)
    e = np.exp(y)
    y -= np.log(_rowsum(e, axis))
    del e

    def backward(gy):
        if not ctx.need(0):
            return None
        p = np.exp(y)                       # g − softmax · Σ g
        p *= _rowsum(gy, axis)
        return np.subtract(gy, p, out=p)
    return y, backward


# --- clipping family: relu6, hardtanh, clamp, hardsigmoid, hardswish -------------------------------

def _clipped(ctx: Ctx, x: np.ndarray, lo: float | None, hi: float | None, inclusive: bool = False):
    """x clipped to [lo, hi] (None: unbounded); the gradient passes where x is inside the bounds
    (strictly inside as torch's hardtanh, or bounds included as torch.clamp)."""
    y = np.clip(x, lo, hi)

    def backward(gy):
        if not ctx.need(0):
            return None
        inside = np.ones(x.shape, bool)
        if lo is not None:
            inside &= (x >= lo) if inclusive else (x > lo)
        if hi is not None:
            inside &= (x <= hi) if inclusive else (x < hi)
        return np.multiply(gy, _mask(inside, gy.dtype))
    return y, backward


@kernel("relu6")
@_rank0_safe
def relu6(ctx: Ctx, x: np.ndarray):
    return _clipped(ctx, x, 0.0, 6.0)


@kernel("hardtanh")
@_rank0_safe
def hardtanh(ctx: Ctx, x: np.ndarray):
    return _clipped(ctx, x, float(ctx.attrs.min_val), float(ctx.attrs.max_val))


@kernel("clamp")
@_rank0_safe
def clamp(ctx: Ctx, x: np.ndarray):
    a = ctx.attrs
    return _clipped(ctx, x, None if a.min is None else float(a.min), None if a.max is None else float(a.max),
                    inclusive=True)


@kernel("hardsigmoid")
@_rank0_safe
def hardsigmoid(ctx: Ctx, x: np.ndarray):
    y = np.multiply(x, 1.0 / 6.0)
    y += 0.5
    np.clip(y, 0.0, 1.0, out=y)

    def backward(gy):
        if not ctx.need(0):
            return None
        return np.multiply(gy, _mask((x > -3.0) & (x < 3.0), gy.dtype) * (1.0 / 6.0))
    return y, backward


@kernel("hardswish")
@_rank0_safe
def hardswish(ctx: Ctx, x: np.ndarray):
    s = np.multiply(x, 1.0 / 6.0)
    s += 0.5
    np.clip(s, 0.0, 1.0, out=s)             # hardsigmoid(x)
    y = np.multiply(x, s)

    def backward(gy):
        if not ctx.need(0):
            return None
        # 0 up to −3, 1 from 3 on, x/3 + 1/2 strictly between (as torch)
        d = np.multiply(x, 1.0 / 3.0)
        d += 0.5
        d *= _mask((x > -3.0) & (x < 3.0), d.dtype)
        d += _mask(x >= 3.0, d.dtype)
        d *= gy
        return d
    return y, backward
