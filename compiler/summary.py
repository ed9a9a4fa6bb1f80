"""The `specc check` table: one row per node, then totals (parameters, MACs, training memory)."""
from __future__ import annotations

import fnmatch
from typing import Any

from .ir import Graph

OPT_STATE = {"sgd": 1, "adam": 2, "adamw": 2}     # state arrays per parameter (sgd: momentum buffer)


def totals(g: Graph, batch: int = 1, frozen: list[str] | None = None) -> dict[str, Any]:
    from .ops import OPS
    frozen = list(frozen if frozen is not None else (g.train.freeze if g.train else []))
    trainable = frozen_n = buffers = 0
    for name, (p, _) in g.params().items():
        n = _numel(p.shape)
        if p.buffer:
            buffers += n
        elif any(fnmatch.fnmatchcase(name, pat) for pat in frozen):
            frozen_n += n
        else:
            trainable += n
    macs = sum(n.macs for n in g.nodes)
    outs = [t for n in g.nodes for t in n.outputs.values() if not OPS[n.op].loss]
    act = sum(t.numel() for t in outs)
    ins = list(g.inputs.values())
    state = 0
    if g.train is not None:
        o = g.train.optimizer
        state = OPT_STATE[o.type] if (o.type != "sgd" or o.momentum) else 0
    else:
        state = 2
    mem = 4 * (trainable + frozen_n + buffers + trainable * (1 + state)) + tensor_bytes(ins + outs, batch)
    return {"params": trainable + frozen_n, "trainable": trainable, "frozen": frozen_n, "buffers": buffers,
            "macs": macs, "activations_per_sample": act, "inputs_per_sample": sum(t.numel() for t in ins),
            "train_memory_bytes": mem, "batch": batch}


ITEMSIZE = {"float32": 4, "float64": 8, "int64": 8, "int32": 4, "bool": 1}


def tensor_bytes(types: list, batch: int) -> int:
    """Bytes of these tensors at `batch`: a tensor with a symbolic dimension holds `batch` samples (its other
    symbols count 1), one without is counted once; each element at its dtype's size."""
    return sum(t.numel() * ITEMSIZE.get(t.dtype, 8) * (batch if any(isinstance(d, str) for d in t.shape) else 1)
               for t in types)


def _numel(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def rows(g: Graph) -> list[dict[str, Any]]:
    out = []
    for n in g.nodes:
        nparams = sum(_numel(p.shape) for p in n.params if not p.buffer) if n.param_prefix == n.name else 0
        shapes = [str(t) for t in n.outputs.values()]
        out.append({"name": n.name, "op": n.op, "shape": shapes[0] if len(shapes) == 1 else ", ".join(
            f"{k}: {t}" for k, t in n.outputs.items()), "params": nparams, "macs": n.macs,
            "shared": n.param_prefix != n.name and bool(n.params)})
    return out


def human(n: float, unit: str = "") -> str:
    if isinstance(n, int) and abs(n) >= 10 ** 15:          # beyond T: an exponent, exact for any size of int
        digits = len(str(abs(n))) - 1 if n.bit_length() < 10_000 else int(n.bit_length() * 0.30103)
        lead = n // 10 ** (digits - 2) if digits < 4000 else 100
        return f"{'-' if n < 0 else ''}{abs(lead) / 100:.2f}e{digits}{unit}"
    if isinstance(n, float) and not abs(n) < 1e15:
        return f"{n:.2e}{unit}"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def render_table(g: Graph, batch: int = 1, frozen: list[str] | None = None) -> str:
    rs = rows(g)
    head = ("name", "op", "output shape", "params", "MACs")
    body = [(r["name"], r["op"], r["shape"], f"{r['params']:,}" + (" (shared)" if r["shared"] else ""),
             f"{r['macs']:,}") for r in rs]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    widths = [min(w, 60) for w in widths]

    def line(cells: tuple) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    t = totals(g, batch, frozen)
    out = [f"{g.name}: {len(g.nodes)} nodes", line(head), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    ins = ", ".join(f"{k} {v}" + (f" {v.dtype}" if v.dtype != "float32" else "") for k, v in g.inputs.items())
    outs = ", ".join(f"{k} {v}" for k, v in g.outputs.items())
    out += ["",
            f"inputs:  {ins}",
            f"outputs: {outs}",
            f"parameters: {t['params']:,} ({t['trainable']:,} trainable, {t['frozen']:,} frozen)"
            + (f"; buffers: {t['buffers']:,}" if t["buffers"] else ""),
            f"parameter size: {human(4 * (t['params'] + t['buffers']), 'B')} as float32",
            f"MACs per sample: {t['macs']:,} ({human(t['macs'])})",
            f"estimated training memory at batch {batch}: {human(t['train_memory_bytes'], 'B')} "
            "(parameters, gradients, optimiser state, inputs, activations)"]
    return "\n".join(out)


def as_json(g: Graph, batch: int = 1) -> dict[str, Any]:
    return {"name": g.name,
            "inputs": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in g.inputs.items()},
            "outputs": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in g.outputs.items()},
            "nodes": rs if (rs := rows(g)) else [],
            "totals": totals(g, batch),
            "spec_hash": g.spec_hash}
