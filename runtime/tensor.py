"""Tensor and the tape: just enough autograd for node-level kernels.

Each kernel call that touches a tensor needing a gradient records one Entry: the backward
closure, its argument tensors and its output tensors. `backward()` walks the entries reachable
from the tensor in reverse creation order and then releases them.
"""
from __future__ import annotations

import itertools
from operator import attrgetter
from typing import Callable, Sequence

import numpy as np

from . import overlap

_seq = itertools.count()
_by_seq = attrgetter("seq")


class Entry:
    __slots__ = ("seq", "backward", "args", "outputs")

    def __init__(self, backward: Callable, args: Sequence["Tensor | None"], outputs: list["Tensor | None"]):
        self.seq = next(_seq)
        self.backward = backward
        self.args = args
        self.outputs = outputs


class Tensor:
    __slots__ = ("data", "requires_grad", "grad", "_entry", "_freed", "__weakref__")

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = np.asarray(data, dtype=dtype) if dtype is not None or not isinstance(data, np.ndarray) else data
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._entry: Entry | None = None
        self._freed = False                 # computed on a tape that a backward() has since released

    # -- conveniences ----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    @property
    def tracked(self) -> bool:
        """True when a gradient can flow into this tensor."""
        return self.requires_grad or self._entry is not None

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, requires_grad={self.tracked})"

    # -- backward ----------------------------------------------------------------------
    def backward(self, grad: np.ndarray | None = None) -> None:
        if self._freed:
            raise RuntimeError(_RELEASED)
        if grad is None:
            if self.data.size != 1:
                raise ValueError("backward() without a gradient needs a scalar tensor; "
                                 f"this one has shape {self.shape}: pass backward(grad)")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"gradient shape {grad.shape} does not match tensor shape {self.shape}")
        grads: dict[int, np.ndarray] = {id(self): grad}
        entries = _reachable(self)
        later: list[tuple[Tensor, object]] = []        # leaves' gradients in arrival order, once one is a Later
        with overlap.collecting():
            try:
                _walk(entries, grads, later)
                overlap.help_with([g for _, g in later])
                for t, g in later:
                    _accumulate(t, overlap.value(g))
            except BaseException:                       # an error, or Ctrl-C while waiting: the worker
                overlap.drop([g for _, g in later])     # starts none of the jobs left
                raise
        if self._entry is None and self.requires_grad:
            _accumulate(self, grad)
        _release(entries)


_RELEASED = ("backward() reached a value whose tape an earlier backward() already released (a second "
             "backward() of the same output, or two losses of one forward pass that share layers): add the "
             "losses and call backward() once on the sum, or run forward again")


def _walk(entries: list[Entry], grads: dict[int, np.ndarray], later: list) -> None:
    """Run the entries' backward, newest first: gradients of intermediate values go into grads, those of
    parameters into their .grad, or, from the first one that is an overlap.Later on (computed beside this
    walk: runtime/overlap.py), into `later` in arrival order (accumulated in that order afterwards)."""
    waiting: set[int] = set()
    for entry in entries:
        result = _entry_backward(entry, grads)
        if result is None:
            continue
        for i, (t, g) in enumerate(zip(entry.args, result)):
            if g is None or t is None:
                continue
            if t._entry is not None:
                if isinstance(g, overlap.Later):
                    try:
                        g = g.get()
                    except BaseException:
                        overlap.drop(list(result[i + 1:]))     # the rest of this result: never collected
                        raise
                key = id(t)
                prev = grads.get(key)
                grads[key] = g if prev is None else prev + g
            elif t.requires_grad:
                if isinstance(g, overlap.Later) or id(t) in waiting:
                    later.append((t, g))
                    waiting.add(id(t))
                else:
                    _accumulate(t, g)
            elif t._freed:
                raise RuntimeError(_RELEASED)


def _entry_backward(entry: Entry, grads: dict[int, np.ndarray]) -> tuple | list | None:
    """The entry's backward applied to its outputs' gradients (taken from grads), or None when nothing
    flows through it."""
    outputs = entry.outputs
    if len(outputs) == 1:
        t = outputs[0]
        g0 = grads.pop(id(t), None) if t is not None else None
        if g0 is None or entry.backward is None:
            return None
        result = entry.backward(g0)
    else:
        outs = tuple(grads.pop(id(t), None) if t is not None else None for t in outputs)
        if entry.backward is None or all(g is None for g in outs):
            return None
        result = entry.backward(outs)
    return result if isinstance(result, (tuple, list)) else (result,)


def _accumulate(t: Tensor, g: np.ndarray) -> None:
    g = np.asarray(g, dtype=t.data.dtype)
    if g.shape != t.data.shape:
        g = np.broadcast_to(g, t.data.shape)
    t.grad = g.copy() if t.grad is None else t.grad + g


def _reachable(root: Tensor) -> list[Entry]:
    """The entries the root's value depends on, newest first (the order backward visits them)."""
    seen: set[int] = set()
    found: list[Entry] = []
    stack = [root]
    pop, push = stack.pop, stack.extend
    while stack:
        e = pop()._entry
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        found.append(e)
        push([a for a in e.args if a is not None and a._entry is not None])
    found.sort(key=_by_seq, reverse=True)
    return found


def _release(entries: list[Entry]) -> None:
    for e in entries:
        for t in e.outputs:
            if t is not None:
                t._entry = None
                t._freed = True
        e.backward, e.args, e.outputs = None, (), []
