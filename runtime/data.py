"""Data sets for training and evaluation: `.npz` files with one array per spec input, checked against the graph.

A data source is a path to an `.npz` file (arrays named after the spec's inputs: `image`, `label`, ...) or
a built-in data set:

- `builtin:digits` — scikit-learn's bundled handwritten digits (1,797 8×8 grey images, shipped inside the
  scikit-learn package, no download): `image` float32 `[n, 1, 8, 8]` scaled to [0, 1] and `label` int64
  `[n]`, split once into a fixed, stratified 80% train / 20% test partition (seed 0). As `train.data.train`
  it means the train part, as `train.data.test` (or `specc eval --data builtin:digits`) the test part;
  `builtin:digits/train`, `builtin:digits/test` and `builtin:digits/all` name a part explicitly.
  The image array is reshaped to the spec's input shape when that holds 64 values per sample (`[N, 64]`).
  `python tools/digits.py` writes the same partition to `data/digits_train.npz` and `data/digits_test.npz`.

Paths written in a spec (`train.data`) are relative to the spec file's folder; paths given on the command
line are relative to the current directory.

Checks (each failure is a UserError naming the array and what was expected): every input the run needs
is present; ranks and fixed sizes match, a symbolic size (N) is the same across arrays; float inputs take
float (or integer, converted) arrays with finite values, int64 inputs take integer arrays (floats are
refused, even whole ones: store class indices as integers), bool inputs take bool or 0/1 arrays; class
indices fed to cross_entropy / nll_loss are in [0, C) with C the logits' dim 1, one_hot and embedding
indices below num_classes / num_embeddings. Pickled (object) arrays are refused when the file is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

from .checkpoint import read_npz

BUILTIN = "builtin:"
BUILTINS = ("digits",)
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass
class Dataset:
    """Named arrays; those in `batched` share a first dimension (the samples) and are cut into mini-batches.

    Arrays whose input has a fixed first size (a graph's adjacency matrix, a lookup table: `static`) are
    passed whole with every batch. With no batched array at all the data set is one sample: one batch."""

    arrays: dict[str, np.ndarray]
    source: str = "<arrays>"
    meta: dict[str, Any] = field(default_factory=dict)
    static: frozenset = frozenset()

    @property
    def batched(self) -> list[str]:
        return [k for k in self.arrays if k not in self.static]

    def __len__(self) -> int:
        b = self.batched
        return len(self.arrays[b[0]]) if b else (1 if self.arrays else 0)

    def subset(self, idx: np.ndarray, source: str | None = None) -> "Dataset":
        return Dataset({k: v if k in self.static else v[idx] for k, v in self.arrays.items()},
                       source or self.source, dict(self.meta), self.static)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Mini-batches in order, or in a fresh random order drawn from `rng` (one permutation per call)."""
        if not self.batched:
            yield dict(self.arrays)
            return
        n = len(self)
        order = rng.permutation(n) if rng is not None else None
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size] if order is not None else slice(s, s + batch_size)
            yield {k: v if k in self.static else v[idx] for k, v in self.arrays.items()}

    def batch_len(self, batch: Mapping[str, np.ndarray]) -> int:
        b = self.batched
        return len(batch[b[0]]) if b else 1

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {list(v.shape)} {v.dtype}" for k, v in self.arrays.items())
        return f"Dataset({self.source}, {len(self)} samples; {shapes})"


# -- built-in data sets ------------------------------------------------------------------------------
def digits(split: str = "train") -> dict[str, np.ndarray]:
    """scikit-learn's handwritten digits: {'image': float32 [n,1,8,8] in [0,1], 'label': int64 [n]}.

    `split` is 'train' (80%), 'test' (the held-out 20%: stratified, seed 0) or 'all'."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the built-in digits data set needs scikit-learn, which is not installed",
                        hint="pip install scikit-learn (or pip install -e .[data])") from None
    d = load_digits()
    images = (np.asarray(d.images, dtype=np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    labels = np.asarray(d.target, dtype=np.int64)
    if split == "all":
        return {"image": images, "label": labels}
    train_idx, test_idx = _stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SEED)
    idx = {"train": train_idx, "test": test_idx}.get(split)
    if idx is None:
        raise UserError(f"the digits data set has parts train, test and all, not '{split}'")
    return {"image": images[idx], "label": labels[idx]}


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[: int(round(fraction * len(idx)))])
    test = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _builtin(source: str, role: str) -> tuple[dict[str, np.ndarray], str]:
    name, _, part = source[len(BUILTIN):].partition("/")
    if name not in BUILTINS:
        raise UserError(f"unknown built-in data set '{source}'",
                        hint=did_you_mean(name, BUILTINS) or f"built-in data sets: "
                        f"{', '.join(BUILTIN + b for b in BUILTINS)}")
    if not part:
        if role == "val":
            raise UserError(f"'{source}' as validation data would overlap the training or test data",
                            hint="use a fraction of the training data instead, e.g. val: 0.1")
        part = "test" if role == "test" else "train"
    return digits(part), f"{BUILTIN}{name}/{part}"


# -- loading and checking ---------------------------------------------------------------------------
def resolve(source: str, base_dir: str | Path | None) -> str:
    """A spec-relative path made usable from the current directory (built-in names unchanged)."""
    if source.startswith(BUILTIN) or base_dir is None or Path(source).is_absolute():
        return source
    return str(Path(base_dir) / source)


def read(source: str, role: str = "train") -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a data source (a .npz path or builtin:NAME) and a description of it."""
    if source.startswith(BUILTIN):
        return _builtin(source, role)
    p = Path(source)
    if not p.exists():
        hint = "check the path (paths in a spec are relative to the spec file's folder)"
        if p.name.startswith("digits_"):
            hint = ("create the digits files with: python tools/digits.py   "
                    "(or use the built-in source: data: {train: builtin:digits, test: builtin:digits})")
        raise UserError(f"data file '{source}' not found", hint=hint)
    if p.is_dir():
        raise UserError(f"data path '{source}' is a folder; expected an .npz file")
    return read_npz(p, "data file"), str(source)


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
                                hint="use a data set of the spec's image size, or change the spec's input to "
                                     "[N, 1, 8, 8]")
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


def digits_fit(graph: Graph, needed: list[str]) -> str | None:
    """None when builtin:digits fits the inputs `needed` (one float image of 64 values per sample, at most
    one int64 label per sample); otherwise why not."""
    floats = [k for k in needed if graph.inputs[k].dtype == "float32"]
    ints = [k for k in needed if graph.inputs[k].dtype == "int64"]
    others = [k for k in needed if k not in floats and k not in ints]
    if len(floats) != 1 or len(ints) > 1 or others:
        return "the built-in digits hold one float image array and one int64 label array"
    t = graph.inputs[floats[0]]
    dims = list(t.shape[1:])
    if not t.rank or not all(isinstance(d, int) for d in dims) or \
            (dims != [1, 8, 8] and int(np.prod(dims)) != 64):
        return f"the built-in digits are 1×8×8 images; input '{floats[0]}' is {t}"
    if ints and graph.inputs[ints[0]].rank != 1:
        return f"the built-in digits have one label per image; input '{ints[0]}' is {graph.inputs[ints[0]]}"
    return None


def _fit_builtin(graph: Graph, arrays: dict[str, np.ndarray], needed: list[str]) -> dict[str, np.ndarray]:
    """Map a built-in set's image/label arrays onto the spec's inputs (renaming and reshaping when clear)."""
    out = dict(arrays)
    floats = [k for k in needed if graph.inputs[k].dtype == "float32"]
    ints = [k for k in needed if graph.inputs[k].dtype == "int64"]
    if "image" not in needed and len(floats) == 1 and floats[0] not in out:
        out[floats[0]] = out.pop("image")
    if "label" not in needed and len(ints) == 1 and ints[0] not in out:
        out[ints[0]] = out.pop("label")
    for k in floats:
        t = graph.inputs[k]
        if k in out and out[k].ndim != t.rank:
            fixed = [d for d in t.shape[1:]]
            if all(isinstance(d, int) for d in fixed) and int(np.prod(fixed)) == out[k][0].size:
                out[k] = out[k].reshape(len(out[k]), *fixed)
    return out


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


def load(graph: Graph, source: str, needed: list[str] | None = None, role: str = "train",
         base_dir: str | Path | None = None) -> Dataset:
    """Read and check one data source."""
    src = resolve(source, base_dir)
    arrays, desc = read(src, role)
    return check(graph, arrays, desc, needed, builtin=src.startswith(BUILTIN))


def as_dataset(graph: Graph, data: Any, needed: list[str] | None = None, role: str = "train") -> Dataset:
    """A Dataset from a Dataset, a {name: array} mapping, or a source string (checked against the graph)."""
    if isinstance(data, Dataset):
        return check(graph, data.arrays, data.source, needed)
    if isinstance(data, (str, Path)):
        return load(graph, str(data), needed, role)
    if isinstance(data, Mapping):
        return check(graph, data, f"<{role} arrays>", needed)
    raise TypeError(f"{role} data must be a Dataset, a {{name: array}} mapping or a path, "
                    f"got {type(data).__name__}")


def split(ds: Dataset, fraction: float, seed: int, what: str = "val") -> tuple[Dataset, Dataset]:
    """(rest, held out): a seeded random `fraction` of the samples held out."""
    if not ds.batched:
        raise UserError(f"cannot hold out a {what} fraction of {ds.source}: no input has a sample dimension "
                        "(a symbolic first size such as N), so the data set is one sample",
                        hint=f"give the {what} data as a file instead")
    if not 0 < fraction < 1:
        raise UserError(f"a {what} fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(ds)
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise UserError(f"a {what} fraction of {fraction} of {n} samples leaves "
                        f"{'no' if k < 1 else 'all'} samples held out",
                        hint="use a larger data set or another fraction")
    perm = np.random.default_rng([seed, 7 if what == "val" else 11]).permutation(n)
    held, rest = np.sort(perm[:k]), np.sort(perm[k:])
    return (ds.subset(rest, f"{ds.source} (without {what} {fraction:g})"),
            ds.subset(held, f"{ds.source} ({what} {fraction:g})"))


@dataclass
class Splits:
    train: Dataset | None
    val: Dataset | None
    test: Dataset | None


def load_splits(graph: Graph, data_cfg: Any, base_dir: str | Path | None, needed: list[str] | None = None,
                train: str | None = None, seed: int = 0, want: tuple[str, ...] = ("train", "val", "test")) -> Splits:
    """Train/val/test as `train.data` says: files, built-in sets or fractions of the training data.

    `train` overrides `train.data.train` (a command-line path, relative to the current directory). A test
    fraction is held out of the training data first, then a val fraction out of what is left."""
    tr_src = train if train is not None else data_cfg.train
    tr_base = None if train is not None else base_dir
    test_cfg, val_cfg = data_cfg.test, data_cfg.val
    tr = None
    if tr_src is not None and ("train" in want or isinstance(val_cfg, float) and "val" in want
                               or isinstance(test_cfg, float) and "test" in want):
        tr = load(graph, tr_src, needed, "train", tr_base)
    te = va = None
    if isinstance(test_cfg, (int, float)) and not isinstance(test_cfg, bool):
        if tr is not None:
            tr, te = split(tr, float(test_cfg), seed, "test")
    elif isinstance(test_cfg, str) and "test" in want:
        te = load(graph, test_cfg, needed, "test", base_dir)
    if isinstance(val_cfg, (int, float)) and not isinstance(val_cfg, bool):
        if tr is not None and "val" in want:
            tr, va = split(tr, float(val_cfg), seed, "val")
    elif isinstance(val_cfg, str) and "val" in want:
        va = load(graph, val_cfg, needed, "val", base_dir)
    return Splits(tr, va, te)
