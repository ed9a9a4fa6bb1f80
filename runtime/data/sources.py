"""Reading data sources (files and built-in sets) and splitting them into train/val/test."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph

from ..checkpoint import read_npz
from . import builtin as B
from .builtin import BUILTIN
from .check import check
from .dataset import Dataset, Splits, split


def resolve(source: str, base_dir: str | Path | None) -> str:
    """A spec-relative path made usable from the current directory (built-in names unchanged)."""
    if source.startswith(BUILTIN) or base_dir is None or Path(source).is_absolute():
        return source
    return str(Path(base_dir) / source)


def read(source: str, role: str = "train", graph: Graph | None = None,
         needed: list[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a data source (a .npz path or builtin:NAME) and a description of it (a built-in set
    is mapped onto the graph's inputs when one is given)."""
    if source.startswith(BUILTIN):
        return B.read(source, role, graph, needed)
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


def load(graph: Graph, source: str, needed: list[str] | None = None, role: str = "train",
         base_dir: str | Path | None = None) -> Dataset:
    """Read and check one data source."""
    src = resolve(source, base_dir)
    arrays, desc = read(src, role, graph, needed) if src.startswith(BUILTIN) else read(src, role)
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
