"""Checks of data against the graph's inputs: names, shapes, dtypes, finite values, class-index ranges."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

from .builtin import _fit_builtin
from .dataset import Dataset


def needed_inputs(graph: Graph, refs: list[str]) -> list[str]:
    """The graph inputs that computing `refs` (node references or output names) reads."""
    stack = [graph.output_refs[r].node if r in graph.output_refs else r.partition(":")[0] for r in refs]
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if graph.has_node(n):
            stack.extend(r.node for r in graph.node(n).inputs if r is not None)
    return [k for k in graph.inputs if k in seen]


def check(graph: Graph, arrays: Mapping[str, np.ndarray], source: str, needed: list[str] | None = None,
          builtin: bool = False) -> Dataset:
    """Validate arrays against the graph's inputs; returns a Dataset of the inputs' arrays (converted)."""
    arrays = dict(arrays)
    needed = list(graph.inputs) if needed is None else needed
    if builtin:
        arrays = _fit_builtin(graph, arrays, needed)
    for name in needed:
        if name not in arrays:
            have = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) or "none"
            t = graph.inputs[name]
            raise UserError(f"data set {source} has no array '{name}' (input '{name}' expects shape "
                            f"[{', '.join(map(str, t.shape))}], {t.dtype}); its arrays: {have}",
                            hint=did_you_mean(name, list(arrays)) or "save the arrays under the spec's input "
                            "names: numpy.savez(path, " + ", ".join(f"{k}=..." for k in needed) + ")")
    use = [k for k in graph.inputs if k in arrays]
    out: dict[str, np.ndarray] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for name in use:
        t = graph.inputs[name]
        arr = np.asarray(arrays[name])
        want = "[" + ", ".join(map(str, t.shape)) + "]"
        if arr.ndim != t.rank or any(isinstance(d, int) and d != s for d, s in zip(t.shape, arr.shape)):
            if builtin and arr.dtype.kind == "f" and arr.shape[1:] == (1, 8, 8):
                per = "×".join(map(str, t.shape[1:])) or "a scalar"
                raise UserError(f"the built-in digits are 1×8×8 images (64 values), but input '{name}' "
                                f"expects {per} per sample ({want})",
                                hint="leave out the size option (builtin:digits follows the spec's image size), "
                                     "or change the spec's input to [N, 1, 8, 8]")
            raise UserError(f"array '{name}' in {source} has shape {list(arr.shape)}, but input '{name}' "
                            f"expects {want} ({t.dtype})",
                            hint="the first dimension is the samples; reshape the array to match the input")
        for d, s in zip(t.shape, arr.shape):
            if isinstance(d, str):
                if d in symbols and symbols[d][0] != s:
                    other, n0 = symbols[d][1], symbols[d][0]
                    raise UserError(f"array '{name}' in {source} has shape {list(arr.shape)}: its size {d} is "
                                    f"{s}, but array '{other}' has {d} = {n0} (input '{name}' expects {want})",
                                    hint="every array must hold the same samples in the same order")
                symbols.setdefault(d, (s, name))
        out[name] = _convert(name, arr, t.dtype, want, source)
    static = frozenset(k for k in out if not (graph.inputs[k].rank and isinstance(graph.inputs[k].shape[0], str)))
    ds = Dataset(out, source, static=static)
    if out and len(ds) == 0:
        raise UserError(f"data set {source} holds no samples (its arrays have length 0)")
    check_ranges(graph, ds)
    return ds


def _convert(name: str, arr: np.ndarray, dtype: str, want: str, source: str) -> np.ndarray:
    kind = arr.dtype.kind
    where = f"array '{name}' in {source}"
    if dtype == "float32":
        if kind not in "fiu":
            raise UserError(f"{where} has dtype {arr.dtype}, but input '{name}' expects float32 {want}",
                            hint="store numbers (float32 preferred)")
        arr = arr.astype(np.float32, copy=False)
        bad = ~np.isfinite(arr)
        if bad.any():
            i = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
            raise UserError(f"{where} holds non-finite values (nan or inf), first at index {list(map(int, i))}",
                            hint="clean or impute the data before training")
        return arr
    if dtype == "int64":
        if kind not in "iu":
            raise UserError(f"{where} has dtype {arr.dtype}, but input '{name}' expects int64 {want} "
                            "(integer class indices)",
                            hint=f"store it as integers: {name}.astype(numpy.int64)")
        return arr.astype(np.int64, copy=False)
    if kind == "b":
        return arr
    if kind in "iu" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise UserError(f"{where} has dtype {arr.dtype}, but input '{name}' expects bool {want}",
                    hint="store a boolean array (or 0/1 integers)")


def check_ranges(graph: Graph, ds: Dataset) -> None:
    """Class indices within the number of classes of the op that reads them."""
    for node in graph.nodes:
        slots: list[tuple[int, int | None, str]] = []
        if node.op in ("cross_entropy", "nll_loss") and len(node.inputs) > 1:
            logits = node.inputs[0]
            t = graph.type_of(logits) if logits is not None else None
            c = t.shape[1] if t is not None and t.rank >= 2 and isinstance(t.shape[1], int) else None
            slots.append((1, c, f"{node.op} '{node.name}' reads logits '{logits}' with {c} classes "
                                f"(shape {t})"))
        elif node.op == "one_hot":
            c = getattr(node.attrs, "num_classes", None)
            slots.append((0, c, f"one_hot '{node.name}' has num_classes {c}"))
        elif node.op == "embedding":
            c = getattr(node.attrs, "num_embeddings", None)
            slots.append((0, c, f"embedding '{node.name}' has num_embeddings {c}"))
        for i, c, why in slots:
            ref = node.inputs[i] if i < len(node.inputs) else None
            if ref is None or ref.port is not None or ref.node not in ds.arrays or graph.has_node(ref.node):
                continue
            arr = ds.arrays[ref.node]
            if arr.dtype.kind not in "iu" or not isinstance(c, int) or c <= 0:
                continue
            ignore = getattr(node.attrs, "ignore_index", None)
            bad = (arr < 0) | (arr >= c)
            if ignore is not None:
                bad &= arr != ignore
            if bad.any():
                j = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
                raise UserError(f"array '{ref.node}' in {ds.source} holds values outside 0..{c - 1} "
                                f"(found {int(arr[j])} at index {list(map(int, j))}, range of the array "
                                f"{int(arr.min())}..{int(arr.max())}); {why}",
                                hint="labels must be class indices 0..C-1: remap them, or change the number "
                                     "of classes in the spec")
