"""Repeated structure: identical consecutive runs of layers become one block used with `repeat`.

Two runs are identical when layer k of each has the same op and attributes and reads the same things:
the same earlier layer of its own run (same offset, same port), or the run's single entry value. Each run
must be fed by the one before (its entry is the previous run's last layer), and nothing outside may read
a run's inner layers; only the last run's last layer is visible (as the `use` node: `stage` means the last
copy). Parameter shapes need not agree: `in_channels` / `in_features` are inferred per copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .registry import Layer

USE = "__use__"
MAX_LEN = 64                          # longest run looked for


@dataclass(eq=False)
class Repeat(Layer):
    """A `- {use: block, name: ..., repeat: k}` line standing for `copies` (lists of layers)."""
    copies: list[list[Layer]] = field(default_factory=list)
    template: list[Layer] = field(default_factory=list)
    block: str = ""


def _entry(run: list[Layer]) -> tuple[Any, int] | None:
    """The single value from outside that `run` reads, or None when it reads several (or none)."""
    inside = {id(x) for x in run}
    outside = {(id(s), p): (s, p) for x in run for s, p in x.inputs if id(s) not in inside}
    return next(iter(outside.values())) if len(outside) == 1 else None


def _same(a: list[Layer], b: list[Layer]) -> bool:
    pos_a = {id(x): i for i, x in enumerate(a)}
    pos_b = {id(x): i for i, x in enumerate(b)}
    for x, y in zip(a, b):
        if x.op != y.op or x.attrs != y.attrs or len(x.inputs) != len(y.inputs) or x.op == USE:
            return False
        for (sx, px), (sy, py) in zip(x.inputs, y.inputs):
            ix, iy = pos_a.get(id(sx)), pos_b.get(id(sy))
            if ix != iy or px != py:
                return False
    return True


def _run_length(layers: list[Layer], i: int, n: int, readers: dict[int, set[int]], outs: set[int]) -> int:
    """How many consecutive copies of layers[i:i+n] start at i (1 when none follows)."""
    first = layers[i:i + n]
    if _entry(first) is None:
        return 1
    k = 1
    while i + (k + 1) * n <= len(layers):
        prev, run = layers[i + (k - 1) * n:i + k * n], layers[i + k * n:i + (k + 1) * n]
        if not _same(first, run) or _entry(run) != (prev[-1], 0):
            break
        k += 1
    # nothing outside may read a copy's inner layers (the last copy's last layer excepted)
    while k > 1:
        span = {id(x): j for j, x in enumerate(layers[i:i + k * n])}
        ok = True
        for j, x in enumerate(layers[i:i + k * n]):
            last_of_copy, last = (j + 1) % n == 0, j == k * n - 1
            if last:
                continue
            if id(x) in outs:
                ok = False
                break
            for r in readers.get(id(x), ()):
                if r not in span or (last_of_copy and span[r] // n != j // n + 1) or \
                        (not last_of_copy and span[r] // n != j // n):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            break
        k -= 1
    return k


def find_repeats(layers: list[Layer], outputs: list[tuple[Any, int]]) -> tuple[list[Layer], dict[int, Layer]]:
    """`layers` with each longest run of identical consecutive copies replaced by a Repeat, and
    {id(last layer of a run): its Repeat} for the references that must follow."""
    readers: dict[int, set[int]] = {}
    for x in layers:
        for s, _ in x.inputs:
            readers.setdefault(id(s), set()).add(id(x))
    outs = {id(s) for s, _ in outputs}
    out: list[Layer] = []
    replaced: dict[int, Layer] = {}
    i, nblock = 0, 0
    while i < len(layers):
        best = (1, 1)
        for n in range(1, min(MAX_LEN, (len(layers) - i) // 2) + 1):
            k = _run_length(layers, i, n, readers, outs)
            if k > 1 and k * n > best[0] * best[1]:
                best = (n, k)
        n, k = best
        if k == 1:
            out.append(layers[i])
            i += 1
            continue
        nblock += 1
        copies = [layers[i + c * n:i + (c + 1) * n] for c in range(k)]
        rep = Repeat(USE, {}, [_entry(copies[0])], hint=f"stage_{nblock}", copies=copies,
                     template=_template(copies[0]), block=f"block_{nblock}")
        replaced[id(copies[-1][-1])] = rep
        out.append(rep)
        i += n * k
    for x in out:                                   # readers of a run's last layer read the use node
        x.inputs = [(replaced.get(id(s), s), p) for s, p in x.inputs]
    return out, replaced


def _template(run: list[Layer]) -> list[Layer]:
    """Copies of the first run's layers, the entry value read as the block input `x`."""
    entry = _entry(run)
    made: dict[int, Layer] = {}
    out = []
    for x in run:
        ins = [("x", 0) if (s, p) == entry else (made[id(s)], p) for s, p in x.inputs]
        t = replace(x, inputs=ins)
        made[id(x)] = t
        out.append(t)
    return out
