"""The kernel registry: forward and vector-Jacobian product of every op, in NumPy.

    @kernel("linear")
    def linear(ctx: Ctx, x, weight, bias=None):
        y = x @ weight.T
        if bias is not None:
            y += bias
        def backward(gy):
            gx = gy @ weight if ctx.needs[0] else None
            ...
            return gx, gw, gb            # one per argument (inputs, then params), None allowed
        return y, backward

Arguments are the op's inputs in declared order (None for an omitted optional input), then its
parameters in the order the shape rule declared them (buffers included, updated in place in
training). A multi-port op returns a tuple with one array per port (None for a port nobody
reads, see ctx.wanted); its backward receives a tuple of the same length, None where no
gradient flows. `backward` may be None for ops with no gradient. Kernels keep the dtype of
their inputs (float32 in use, float64 in gradient checks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Ctx:
    attrs: Any                                   # the op's validated attribute model
    training: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    needs: tuple[bool, ...] = ()                 # per argument: does backward need its gradient
    wanted: tuple[bool, ...] = (True,)           # per output port: is it read by anyone
    symbols: dict[str, int] = field(default_factory=dict)   # bound symbolic dims, e.g. {"N": 32}
    node: Any = None                             # the IR node (for output types, names in errors)

    def need(self, i: int) -> bool:
        return i < len(self.needs) and self.needs[i]


Kernel = Callable[..., tuple[Any, Callable | None]]
KERNELS: dict[str, Kernel] = {}


def kernel(name: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        if name in KERNELS:
            raise RuntimeError(f"kernel {name!r} registered twice")
        KERNELS[name] = fn
        return fn
    return register


FUSED: dict[tuple[str, str], Kernel] = {}


def fused(first: str, second: str) -> Callable[[Kernel], Kernel]:
    """Register the kernel of op `first` followed by op `second` (runtime/fusion.py): called as a kernel
    with the first node's Ctx and arguments, it returns the second node's output and a backward that
    returns the first node's gradients."""
    def register(fn: Kernel) -> Kernel:
        FUSED[(first, second)] = fn
        return fn
    return register


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back down to `shape`."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
