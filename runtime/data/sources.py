"""Reading data sources (files, folders, built-in sets) and splitting them into train/val/test.

A source is a string — a path whose kind is told by its suffix (`.npz`; a folder of `.npy` files; a folder
of class sub-folders of images; `.csv`/`.tsv` tables; `.txt` text; `.graphml`/`.gml`/`.edgelist` graphs)
or `builtin:NAME` — or a mapping with options (`compiler.spec.Source`, docs/data.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph
from compiler.spec import SOURCE_KINDS, Source

from ..checkpoint import read_npz
from . import builtin as B
from .builtin import BUILTIN
from .check import Problems, check
from .dataset import Dataset, Splits, held_out, split
from .fields import Read, map_fields, unmapped_hint

SUFFIX_KIND = {".npz": "npz", ".csv": "csv", ".tsv": "tsv", ".txt": "text", ".graphml": "graph", ".gml": "graph",
               ".edgelist": "graph", ".adjlist": "graph", ".gexf": "graph"}


def resolve(source: str, base_dir: str | Path | None) -> str:
    """A spec-relative path made usable from the current directory (built-in names unchanged)."""
    if source.startswith(BUILTIN) or base_dir is None or Path(source).is_absolute():
        return source
    return str(Path(base_dir) / source)


def describe(source: Any) -> str:
    return source if isinstance(source, str) else f"{{{source.kind}: {source.path}}}"


def _missing(source: str) -> UserError:
    hint = "check the path (paths in a spec are relative to the spec file's folder)"
    if Path(source).name.startswith("digits_"):
        hint = ("create the digits files with: python tools/digits.py   "
                "(or use the built-in source: data: {train: builtin:digits, test: builtin:digits})")
    return UserError(f"data file '{source}' not found", hint=hint)


def as_source(path: str) -> Source:
    """The Source a path string means, told by its suffix (folders by what they hold)."""
    p = Path(path)
    if p.is_dir():
        if any(p.glob("*.npy")):
            return Source(npy=path)
        if any(c.is_dir() for c in p.iterdir()):
            return Source(images=path)
        raise UserError(f"data folder '{path}' holds neither .npy files (one per input) nor class sub-folders "
                        "of images", hint="see docs/data.md for the sources specc reads")
    kind = SUFFIX_KIND.get(p.suffix.lower())
    if kind is None:
        if p.suffix.lower() == ".npy":
            raise UserError(f"'{path}' is a single .npy array; a data set names every input",
                            hint="put one NAME.npy per input in a folder and give the folder, or use an .npz")
        if not p.exists():
            raise _missing(path)
        return Source(npz=path)                     # read_npz says what is wrong with it
    return Source(**{kind: path})


def like_spec(path: str, like: Any, like_base: str | Path | None = None) -> Any:
    """A command-line path read the way the spec reads its own source of the same kind (same options;
    a graph's node table stays the spec's, relative to `like_base`, the spec's folder)."""
    if not isinstance(like, Source) or path.startswith(BUILTIN):
        return path
    kind = as_source(path).kind if Path(path).exists() else SUFFIX_KIND.get(Path(path).suffix.lower())
    tables = ("csv", "tsv")
    if kind == like.kind or kind in tables and like.kind in ("csv", "tsv", "graph") \
            or like.kind == "text" and kind in ("text", "tsv"):
        update: dict[str, Any] = {like.kind: path}
        if like.nodes is not None:
            update["nodes"] = resolve(like.nodes, like_base)
        return like.model_copy(update=update)
    return path


def read(source: str, role: str = "train", graph: Graph | None = None,
         needed: list[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a .npz path or builtin:NAME, and a description of it (a built-in set is mapped onto
    the graph's inputs when one is given)."""
    if source.startswith(BUILTIN):
        return B.read(source, role, graph, needed)
    if not Path(source).exists():
        raise _missing(source)
    if Path(source).is_dir():
        raise UserError(f"data path '{source}' is a folder; expected an .npz file")
    return read_npz(source, "data file"), str(source)


def read_source(graph: Graph, src: Source, path: str, needed: list[str], role: str,
                derived: dict[str, Any] | None, train_rows: Callable[[int], np.ndarray] | None,
                base: Path | None) -> Read:
    kind = src.kind
    if kind not in ("npy", "images") and not Path(path).exists():
        raise _missing(path)
    if kind == "npz":
        from .arrays import read_npz_source
        return read_npz_source(path)
    if kind == "npy":
        from .arrays import read_npy_folder
        return read_npy_folder(path)
    if kind in ("csv", "tsv"):
        from .table import read_table
        return read_table(path, src, derived, role)
    if kind == "images":
        from .images import read_images
        return read_images(path, src, graph, needed, derived)
    if kind == "text":
        from .text import read_text
        return read_text(path, src, graph, derived, train_rows)
    from .graphs import read_graph
    return read_graph(path, src, graph, needed, role, derived, base)


def load(graph: Graph, source: Any, needed: list[str] | None = None, role: str = "train",
         base_dir: str | Path | None = None, derived: dict[str, Any] | None = None,
         train_rows: Callable[[int], np.ndarray] | None = None, like: Any = None,
         like_base: str | Path | None = None) -> Dataset:
    """Read and check one data source (a string or a Source). `derived`: what training derived (category
    names, class names, vocabulary), reused so that indices mean the same as in training. `like`: the spec's
    own Source, whose options a path of the same kind takes (`--data test.csv` read like the training table)."""
    needed = list(graph.inputs) if needed is None else needed
    if isinstance(source, str) and like is not None:
        source = like_spec(resolve(source, base_dir), like, like_base)
        base_dir = None if isinstance(source, Source) else base_dir
    if isinstance(source, Mapping):
        source = Source.model_validate(dict(source))
    if isinstance(source, str):
        src_path = resolve(source, base_dir)
        if src_path.startswith(BUILTIN):
            arrays, desc = read(src_path, role, graph, needed)
            return check(graph, arrays, desc, needed, builtin=True)
        src = as_source(src_path)
    else:
        src, src_path = source, resolve(source.path, base_dir)
    base = Path(base_dir) if base_dir is not None else None
    r = read_source(graph, src, src_path, needed, role, derived, train_rows, base)
    mapped = map_fields(graph, r, needed, src.inputs)
    missing = [n for n in needed if n not in mapped]
    if missing and src.kind not in ("npz", "npy"):
        raise UserError(f"data source {r.desc} feeds no input '{missing[0]}'"
                        + (f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""),
                        hint=unmapped_hint(r, missing))
    for name, col in mapped.items():                # a [N] column for a [N, 1] input
        t = graph.inputs[name]
        if isinstance(col, np.ndarray) and col.ndim + 1 == t.rank and t.shape[-1] == 1:
            mapped[name] = col[..., None]
    meta = {"kind": src.kind, "derived": r.derived} if r.derived else {"kind": src.kind}
    return check(graph, mapped if src.kind not in ("npz", "npy") else {**r.fields, **mapped}, r.desc, needed,
                 meta=meta)


def as_dataset(graph: Graph, data: Any, needed: list[str] | None = None, role: str = "train") -> Dataset:
    """A Dataset from a Dataset, a {name: array} mapping, a Source or a source string (checked)."""
    if isinstance(data, Dataset):
        want = frozenset(graph.inputs if needed is None else needed)
        if data.checked is not None and data.checked[0] is graph and want <= data.checked[1]:
            return data                             # checked when it was loaded (a memory map is not re-read)
        return check(graph, data.columns, data.source, needed, index=data.index, meta=data.meta)
    if isinstance(data, (str, Path, Source)):
        return load(graph, str(data) if isinstance(data, Path) else data, needed, role)
    if isinstance(data, Mapping):
        return check(graph, data, f"<{role} arrays>", needed)
    raise TypeError(f"{role} data must be a Dataset, a {{name: array}} mapping, a Source or a path, "
                    f"got {type(data).__name__}")


def _fraction(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_splits(graph: Graph, data_cfg: Any, base_dir: str | Path | None, needed: list[str] | None = None,
                train: Any = None, seed: int = 0, want: tuple[str, ...] = ("train", "val", "test"),
                derived: dict[str, Any] | None = None) -> Splits:
    """Train/val/test as `train.data` says: files, built-in sets or fractions of the training data.

    `train` overrides `train.data.train` (a command-line path, relative to the current directory). A test
    fraction is held out of the training data first, then a val fraction out of what is left. What the
    training data derives (categories, vocabulary) is reused for val and test; `derived` (from a checkpoint)
    is used instead when given. Every problem in every split is reported together."""
    tr_src = train if train is not None else data_cfg.train
    tr_base = None if train is not None else base_dir
    test_cfg, val_cfg = data_cfg.test, data_cfg.val
    test_f, val_f = _fraction(test_cfg), _fraction(val_cfg)
    problems = Problems()

    def train_rows(n: int) -> np.ndarray:
        rows = np.arange(n)
        if test_f is not None:
            rows = rows[held_out(len(rows), test_f, seed, "test")[0]]
        if val_f is not None:
            rows = rows[held_out(len(rows), val_f, seed, "val")[0]]
        return rows

    def attempt(fn: Callable[[], Dataset | None]) -> Dataset | None:
        try:
            return fn()
        except UserError as e:
            if e.code != 1:
                raise
            problems.extend(e)
            return None

    tr = None
    if tr_src is not None and ("train" in want or val_f is not None and "val" in want
                               or test_f is not None and "test" in want):
        tr = attempt(lambda: load(graph, tr_src, needed, "train", tr_base, derived, train_rows,
                                  like=data_cfg.train if train is not None else None, like_base=base_dir))
    got = dict(derived or {}) or (tr.meta.get("derived", {}) if tr is not None else {})
    te = va = None
    if test_f is not None:
        if tr is not None:
            tr, te = split(tr, test_f, seed, "test")
    elif test_cfg is not None and "test" in want:
        te = attempt(lambda: load(graph, test_cfg, needed, "test", base_dir, got))
    elif "test" in want and _graph_split(tr_src, tr, got, "test"):
        te = attempt(lambda: load(graph, tr_src, needed, "test", tr_base, got))
    if val_f is not None:
        if tr is not None and "val" in want:
            tr, va = split(tr, val_f, seed, "val")
    elif val_cfg is not None and "val" in want:
        va = attempt(lambda: load(graph, val_cfg, needed, "val", base_dir, got))
    elif "val" in want and _graph_split(tr_src, tr, got, "val"):
        va = attempt(lambda: load(graph, tr_src, needed, "val", tr_base, got))
    problems.raise_if_any()
    return Splits(tr, va, te)


def _graph_split(src: Any, tr: Dataset | None, derived: dict[str, Any], what: str) -> bool:
    """A graph whose split column marks `what` nodes serves as that split too."""
    graph = (tr.meta.get("kind") == "graph") if tr is not None else (
        isinstance(src, Source) and src.kind == "graph"
        or isinstance(src, str) and SUFFIX_KIND.get(Path(src).suffix.lower()) == "graph")
    return src is not None and graph and derived.get("split_sizes", {}).get(what, 0) > 0


__all__ = ["SOURCE_KINDS", "as_dataset", "as_source", "describe", "load", "load_splits", "read", "resolve"]
