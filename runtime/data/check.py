"""Checks of data against the graph's inputs: names, shapes, dtypes, finite values, class-index ranges."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

from .builtin import _fit_builtin
from .columns import LazyColumn, chunks
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


class Problems:
    """Every problem found in the data, raised together as one UserError (one run shows them all)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []

    def add(self, message: str, hint: str | None = None) -> None:
        self.items.append((message, hint))

    def extend(self, err: UserError) -> None:
        self.items.extend(getattr(err, "problems", None) or [(err.message, err.hint)])

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            err = UserError(*self.items[0])
        else:
            lines = [f"{len(self.items)} problems with the data:"]
            for i, (msg, hint) in enumerate(self.items, 1):
                lines.append(f"  {i}. {msg}" + (f"\n     hint: {hint}" if hint else ""))
            err = UserError("\n".join(lines))
        err.problems = list(self.items)         # type: ignore[attr-defined]
        raise err


def check(graph: Graph, arrays: Mapping[str, Any], source: str, needed: list[str] | None = None,
          builtin: bool = False, index: np.ndarray | None = None, meta: dict[str, Any] | None = None) -> Dataset:
    """Validate columns against the graph's inputs; returns a Dataset of the inputs' columns (converted).

    Every problem is collected and raised as one UserError. `index` selects rows (a subset) of the
    columns; lazy and memory-mapped columns are checked a block at a time, never loaded whole."""
    arrays = dict(arrays)
    needed = list(graph.inputs) if needed is None else needed
    if builtin:
        arrays = _fit_builtin(graph, arrays, needed)
    problems = Problems()
    for name in needed:
        if name not in arrays:
            have = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) or "none"
            t = graph.inputs[name]
            problems.add(f"data set {source} has no array '{name}' (input '{name}' expects shape "
                         f"[{', '.join(map(str, t.shape))}], {t.dtype}); its arrays: {have}",
                         did_you_mean(name, list(arrays)) or "save the arrays under the spec's input "
                         "names: numpy.savez(path, " + ", ".join(f"{k}=..." for k in needed) + ")")
    use = [k for k in graph.inputs if k in arrays]
    out: dict[str, Any] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for name in use:
        t = graph.inputs[name]
        arr = arrays[name] if isinstance(arrays[name], LazyColumn) else np.asarray(arrays[name])
        shape = tuple(arr.shape)
        if index is not None and not (t.rank and isinstance(t.shape[0], int)):
            shape = (len(index), *shape[1:])
        if not _shape_ok(name, shape, t, source, builtin, symbols, problems):
            continue
        conv = _convert(name, arr, t.dtype, _want(t), source, index, problems)
        if conv is not None:
            out[name] = conv
    static = frozenset(k for k in out if not (graph.inputs[k].rank and isinstance(graph.inputs[k].shape[0], str)))
    ds = Dataset(out, source, dict(meta or {}), static=static, index=index)
    if out and len(ds) == 0:
        problems.add(f"data set {source} holds no samples (its arrays have length 0)",
                     "an empty split: check the file, or the fraction held out for val/test")
    if not problems.items:
        check_ranges(graph, ds, problems)
    problems.raise_if_any()
    ds.checked = (graph, frozenset(needed))
    return ds


def _want(t: Any) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def _shape_ok(name: str, shape: tuple, t: Any, source: str, builtin: bool,
              symbols: dict[str, tuple[int, str]], problems: Problems) -> bool:
    want = _want(t)
    if len(shape) != t.rank or any(isinstance(d, int) and d != s for d, s in zip(t.shape, shape)):
        if builtin and shape[1:] == (1, 8, 8):
            per = "×".join(map(str, t.shape[1:])) or "a scalar"
            problems.add(f"the built-in digits are 1×8×8 images (64 values), but input '{name}' "
                         f"expects {per} per sample ({want})",
                         "leave out the size option (builtin:digits follows the spec's image size), "
                         "or change the spec's input to [N, 1, 8, 8]")
        elif _channels_last(shape, t.shape):
            c = t.shape[1]
            problems.add(f"array '{name}' in {source} has shape {list(shape)}, channels last ([N, H, W, C]), "
                         f"but input '{name}' expects channels first {want}",
                         f"transpose it, do not reshape it (a reshape scrambles the pixels): "
                         f"numpy.transpose({name}, (0, 3, 1, 2)) gives [N, {c}, H, W]")
        else:
            problems.add(f"array '{name}' in {source} has shape {list(shape)}, but input '{name}' "
                         f"expects {want} ({t.dtype})",
                         "the first dimension is the samples; reshape the array to match the input")
        return False
    for d, s in zip(t.shape, shape):
        if isinstance(d, str):
            if d in symbols and symbols[d][0] != s:
                other, n0 = symbols[d][1], symbols[d][0]
                problems.add(f"array '{name}' in {source} has shape {list(shape)}: its size {d} is "
                             f"{s}, but array '{other}' has {d} = {n0} (input '{name}' expects {want})",
                             "every array must hold the same samples in the same order")
                return False
            symbols.setdefault(d, (s, name))
    return True


def _channels_last(shape: tuple, declared: tuple) -> bool:
    """[N, H, W, C] given where [N, C, H, W] is declared (C, H, W fixed; C unlike H)."""
    if len(shape) != 4 or len(declared) != 4 or not all(isinstance(d, int) for d in declared[1:]):
        return False
    c, h, w = declared[1:]
    return tuple(shape[1:]) == (h, w, c) and c != h


def _convert(name: str, arr: Any, dtype: str, want: str, source: str, index: np.ndarray | None,
             problems: Problems) -> Any:
    """The column converted to the input's dtype (lazily for lazy columns), or None after a problem."""
    kind = arr.dtype.kind
    where = f"array '{name}' in {source}"
    if dtype == "float32":
        if kind not in "fiu":
            problems.add(f"{where} has dtype {arr.dtype}, but input '{name}' expects float32 {want}",
                         "store numbers (float32 preferred)")
            return None
        arr = arr.astype(np.float32, copy=False)
        if kind == "f" and not getattr(arr, "finite", False):
            for start, block in chunks(arr, index if isinstance(arr, LazyColumn) else None):
                bad = ~np.isfinite(block)
                if bad.any():
                    i = list(np.unravel_index(int(np.flatnonzero(bad)[0]), block.shape))
                    i[0] += start
                    problems.add(f"{where} holds non-finite values (nan or inf), first at index "
                                 f"{list(map(int, i))}", "clean or impute the data before training")
                    return None
        return arr
    if dtype == "int64":
        if kind not in "iu":
            problems.add(f"{where} has dtype {arr.dtype}, but input '{name}' expects int64 {want} "
                         "(integer class indices)", f"store it as integers: {name}.astype(numpy.int64)")
            return None
        return arr.astype(np.int64, copy=False)
    if kind == "b":
        return arr
    if kind in "iu" and not isinstance(arr, LazyColumn) and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    problems.add(f"{where} has dtype {arr.dtype}, but input '{name}' expects bool {want}",
                 "store a boolean array (or 0/1 integers)")
    return None


def check_ranges(graph: Graph, ds: Dataset, problems: Problems | None = None) -> None:
    """Class indices within the number of classes of the op that reads them (every problem reported)."""
    own = problems is None
    problems = Problems() if problems is None else problems
    seen: set[tuple[str, int]] = set()
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
            if ref is None or ref.port is not None or ref.node not in ds.columns or graph.has_node(ref.node):
                continue
            col = ds.columns[ref.node]
            if col.dtype.kind not in "iu" or not isinstance(c, int) or c <= 0 or (ref.node, c) in seen:
                continue
            seen.add((ref.node, c))
            ignore = getattr(node.attrs, "ignore_index", None)
            found, lo, hi = None, None, None
            rows = ds.index if ref.node not in ds.static else None
            for start, arr in chunks(col, rows):
                if arr.size == 0:
                    continue
                bad = (arr < 0) | (arr >= c)
                if ignore is not None:
                    bad &= arr != ignore
                lo = int(arr.min()) if lo is None else min(lo, int(arr.min()))
                hi = int(arr.max()) if hi is None else max(hi, int(arr.max()))
                if found is None and bad.any():
                    j = list(np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape))
                    found = (int(arr[tuple(j)]), [start + j[0], *j[1:]] if arr.ndim else j)
            if found is not None:
                problems.add(f"array '{ref.node}' in {ds.source} holds values outside 0..{c - 1} "
                             f"(found {found[0]} at index {list(map(int, found[1]))}, range of the array "
                             f"{lo}..{hi}); {why}",
                             "labels must be class indices 0..C-1: remap them, or change the number "
                             "of classes in the spec")
    if own:
        problems.raise_if_any()
