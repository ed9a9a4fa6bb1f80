"""Built-in data sets (`builtin:NAME`): made or shipped by an installed package, never downloaded."""
from __future__ import annotations

import numpy as np

from compiler.errors import UserError, did_you_mean
from compiler.ir import Graph

BUILTIN = "builtin:"
BUILTINS = ("digits",)
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


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
