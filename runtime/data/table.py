"""CSV/TSV tables (Python's csv module): columns mapped onto inputs by name.

Fields: `features` (the numeric columns named in `features`, stacked into float32 [N, F]; a categorical
column listed there is one-hot encoded in place), one int64 field per `categorical` column (class indices;
the category names, sorted, are derived from the training data and saved with the checkpoint), the
`label` column (class indices when it is categorical or not numeric, else numbers), and every other
numeric column under its own name. A bad cell is reported as `FILE:ROW: column 'NAME': 'n/a' is not a number`
(ROW is the line in the file; the header is line 1)."""
from __future__ import annotations

import csv
import gc
from typing import Any

import numpy as np

from compiler.errors import UserError, did_you_mean

from .fields import Read

MAX_FIELD = 1 << 20


class LineNumbers:
    """The file line of each data row, worked out only when a message needs one (a quoted cell may span
    lines, so row i is not always line i + 2)."""

    def __init__(self, path: str, delimiter: str):
        self.path, self.delimiter = path, delimiter
        self._lines: list[int] | None = None

    def __getitem__(self, i: int) -> int:
        if self._lines is None:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=self.delimiter)
                next(reader, None)
                self._lines = [reader.line_num for row in reader if _filled(row)]
        return self._lines[i]

    def __len__(self) -> int:
        return len(self._lines) if self._lines is not None else 0

    def only(self, keep: list[bool]) -> "Subset":
        return Subset(self, [i for i, k in enumerate(keep) if k])


class Subset:
    def __init__(self, base: LineNumbers, rows: list[int]):
        self.base, self.rows = base, rows

    def __getitem__(self, i: int) -> int:
        return self.base[self.rows[i]]


def _filled(row: list[str]) -> bool:
    return bool(row) and not (len(row) == 1 and not row[0].strip())


def _all_rows(reader: Any) -> list[list[str]]:
    """Every row, with the cyclic garbage collector paused: a million row lists would trigger many
    full collections that find nothing (rows hold only strings) and make reading superlinear."""
    was = gc.isenabled()
    gc.disable()
    try:
        return list(reader)
    finally:
        if was:
            gc.enable()


def read_rows(path: str, delimiter: str) -> tuple[list[str], list[list[str]], LineNumbers]:
    """(header, columns as sequences of strings, line number of each row)."""
    csv.field_size_limit(MAX_FIELD)
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise UserError(f"cannot read table '{path}': {e.strerror or e}") from None
    lines = LineNumbers(path, delimiter)
    with f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
            rows = _all_rows(reader)
        except StopIteration:
            raise UserError(f"table '{path}' is empty", hint="the first line names the columns") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise UserError(f"{path}:{reader.line_num}: not a readable table row: {e}") from None
    dup = [h for h in header if header.count(h) > 1]
    if dup:
        raise UserError(f"{path}:1: column '{dup[0]}' appears twice in the header")
    width = len(header)
    if set(map(len, rows)) - {width}:                   # counted in C; blank lines are the rare case
        rows = [r for r in rows if _filled(r)]
    if set(map(len, rows)) - {width}:
        i = next(i for i, r in enumerate(rows) if len(r) != width)
        raise UserError(f"{path}:{lines[i]}: {len(rows[i])} cells, but the header names {width} columns",
                        hint=_delim_hint(path, delimiter, rows[i]))
    cols = [list(c) for c in zip(*rows)] if rows else [[] for _ in header]
    return header, cols, lines


def _delim_hint(path: str, delimiter: str, row: list[str]) -> str | None:
    if delimiter == "," and any("\t" in c for c in row):
        return "the file looks tab-separated: name it .tsv, or set delimiter: \"\\t\""
    if delimiter == "\t" and any("," in c for c in row):
        return "the file looks comma-separated: name it .csv, or set delimiter: \",\""
    return None


def numbers(values: list[str], path: str, column: str, lines: list[int]) -> np.ndarray:
    """float64 values of a column; the first bad cell is reported with its line and column."""
    try:
        arr = np.array(values, dtype=np.float64) if values else np.zeros(0)
    except ValueError:
        arr = None
    if arr is not None and np.isfinite(arr).all():
        return arr
    for i, v in enumerate(values):
        try:
            x = float(v)
        except ValueError:
            what = "is empty (a missing value)" if not v.strip() else "is not a number"
            raise UserError(f"{path}:{lines[i]}: column '{column}': '{v}' {what}",
                            hint="fill or drop the missing values, or list the column under categorical") from None
        if not np.isfinite(x):
            raise UserError(f"{path}:{lines[i]}: column '{column}': '{v}' is not a finite number",
                            hint="fill or drop the missing values")
    raise AssertionError("unreachable")                   # pragma: no cover


def is_numeric(values: list[str]) -> bool:
    """Whether a column holds numbers (judged on its first 1,000 filled cells; empty cells are missing values)."""
    filled = [v for v in values[:5000] if v.strip()][:1000]
    try:
        np.array(filled, dtype=np.float64)
        return True
    except ValueError:
        return False


def categories(values: list[str], path: str, column: str, lines: list[int], known: list[str] | None
               ) -> tuple[np.ndarray, list[str]]:
    """Class indices of a category column, and the category names (sorted; or `known`, from training)."""
    arr = np.char.strip(np.asarray(values, dtype=str)) if values else np.zeros(0, dtype=str)
    uniq, inverse = np.unique(arr, return_inverse=True)
    names = known if known is not None else [str(u) for u in uniq]
    pos = {n: i for i, n in enumerate(names)}
    lookup = np.array([pos.get(str(u), -1) for u in uniq], dtype=np.int64)
    idx = lookup[inverse.reshape(-1)] if len(values) else np.zeros(0, dtype=np.int64)
    for i in np.flatnonzero((idx < 0) | (arr == "")).tolist()[:1]:
        v = values[i]
        if not v.strip():
            raise UserError(f"{path}:{lines[i]}: column '{column}': '{v}' is empty (a missing value)",
                            hint="fill or drop the rows with missing values")
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise UserError(f"{path}:{lines[i]}: column '{column}': '{v}' is not a category seen in the "
                        f"training data ({shown})", hint="the categories are fixed when training starts")
    return idx, names


def read_table(path: str, src: Any, derived: dict[str, Any] | None = None, role: str = "train") -> Read:
    """The fields of a CSV/TSV table (see the module docstring). For `specc run` (role 'run') the label
    column may be absent."""
    delim = src.delimiter or ("\t" if src.kind == "tsv" or str(path).lower().endswith(".tsv") else ",")
    header, cols, lines = read_rows(path, delim)
    by = dict(zip(header, cols))
    known = dict((derived or {}).get("categories", {}))
    wanted = list(src.features or []) + list(src.categorical) + ([src.label] if src.label and role != "run" else [])
    for c in wanted:
        if c not in by:
            raise UserError(f"table '{path}' has no column '{c}' (its columns: {', '.join(header)})",
                            hint=did_you_mean(c, header))
    if src.label is None and "label" in by and "label" not in src.inputs.values():
        src = src.model_copy(update={"label": "label"})        # a column named label is the label
    if role == "run" and src.label is not None and src.label not in by:
        src = src.model_copy(update={"label": None})
    cats = set(src.categorical)
    fields: dict[str, Any] = {}
    out_derived: dict[str, Any] = {"categories": {}}
    coded: dict[str, np.ndarray] = {}
    label = src.label
    for c in header:
        values = by[c]
        if c in cats or c == label and not is_numeric(values):
            coded[c], out_derived["categories"][c] = categories(values, path, c, lines, known.get(c))
            fields[c] = coded[c]
    if label is not None:
        fields["label"] = coded[label] if label in coded else _label_numbers(by[label], path, label, lines)
    feats = src.features
    if feats is None:
        feats = [c for c in header if c != label and c not in cats and c not in src.inputs.values()]
    blocks = []
    for c in feats:
        if c in coded:
            blocks.append(np.eye(len(out_derived["categories"][c]), dtype=np.float32)[coded[c]])
        else:
            blocks.append(numbers(by[c], path, c, lines).astype(np.float32)[:, None])
    if blocks:
        fields["features"] = np.concatenate(blocks, axis=1)
        out_derived["features"] = list(feats)
    for c in header:
        if c not in fields and c != label and c not in feats and is_numeric(by[c]):
            fields[c] = numbers(by[c], path, c, lines).astype(np.float32)
    if not out_derived["categories"]:
        del out_derived["categories"]
    return Read(fields, str(path), out_derived, defaults={label: "label"} if label else {})


def _label_numbers(values: list[str], path: str, column: str, lines: list[int]) -> np.ndarray:
    arr = numbers(values, path, column, lines)
    if arr.size and np.all(arr == np.round(arr)) and np.abs(arr).max() < 2 ** 53:
        return arr.astype(np.int64)
    return arr.astype(np.float32)

