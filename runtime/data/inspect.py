"""What `specc data inspect SPEC [--data SOURCE]` (cli/data.py) prints: what specc will feed each input.

Reads and checks the data exactly as `specc train` does (every problem reported, exit 1), then prints
the split sizes and, per split and input, the shape, dtype, range (and mean of float inputs), the class
balance of label inputs, and what the source derived (category names, classes, vocabulary)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .columns import chunks
from .dataset import Dataset

MAX_CLASSES = 30


def stats(ds: Dataset, name: str) -> dict[str, Any]:
    """min, max, mean and (for integers) value counts of a column, read block by block."""
    col = ds.columns[name]
    rows = None if name in ds.static else ds.index
    lo = hi = None
    total, count = 0.0, 0
    counts: dict[int, int] = {}
    for _, block in chunks(col, rows):
        if block.size == 0:
            continue
        b = np.asarray(block)
        lo = b.min() if lo is None else min(lo, b.min())
        hi = b.max() if hi is None else max(hi, b.max())
        total += float(b.sum(dtype=np.float64))
        count += b.size
        if b.dtype.kind in "iu" and len(counts) <= MAX_CLASSES:
            vals, n = np.unique(b, return_counts=True)
            for v, c in zip(vals.tolist(), n.tolist()):
                counts[v] = counts.get(v, 0) + c
    return {"min": lo, "max": hi, "mean": total / count if count else None, "counts": counts}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _balance(counts: dict[int, int], names: list[str] | None) -> str:
    if not counts or len(counts) > MAX_CLASSES:
        return ""
    n = sum(counts.values())
    parts = []
    for k in sorted(counts):
        label = names[k] if names and 0 <= k < len(names) else str(k)
        parts.append(f"{label} {counts[k]} ({100 * counts[k] / n:.0f}%)")
    return "classes: " + ", ".join(parts)


def describe_split(what: str, ds: Dataset, derived: dict[str, Any]) -> list[str]:
    lines = [f"{what}: {ds.source}, {len(ds)} sample{'s' if len(ds) != 1 else ''}"]
    rows = []
    for name in ds.columns:
        s = stats(ds, name)
        dtype = str(ds.columns[name].dtype)
        rng = f"{_fmt(s['min'])} .. {_fmt(s['max'])}"
        extra = f"mean {_fmt(s['mean'])}" if dtype.startswith("float") else ""
        if dtype == "int64" and len(ds.shape(name)) == 1:
            names = derived.get("classes")
            extra = _balance(s["counts"], names)
        rows.append((name, str(list(ds.shape(name))), dtype, rng, extra))
    w = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0] * 4
    for r in rows:
        lines.append("  " + "  ".join(r[i].ljust(w[i]) for i in range(4)) + ("  " + r[4] if r[4] else ""))
    return lines


def describe_derived(derived: dict[str, Any]) -> list[str]:
    out = []
    for col, names in derived.get("categories", {}).items():
        out.append(f"categories of '{col}' ({len(names)}): {', '.join(map(str, names[:12]))}"
                   + (", ..." if len(names) > 12 else ""))
    if "classes" in derived and not derived.get("categories"):
        c = derived["classes"]
        out.append(f"classes ({len(c)}): {', '.join(map(str, c[:12]))}" + (", ..." if len(c) > 12 else ""))
    if "vocab" in derived:
        v = derived["vocab"]
        out.append(f"vocabulary: {len(v)} entries ({', '.join(v[:8])}, ...), built on the training split")
    if "split_sizes" in derived:
        sizes = ", ".join(f"{k} {v}" for k, v in derived["split_sizes"].items())
        out.append(f"graph: {derived.get('nodes')} nodes; labelled nodes per split: {sizes}")
    if "features" in derived:
        out.append(f"feature columns: {', '.join(derived['features'])}")
    return out
