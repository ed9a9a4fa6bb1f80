"""Columns read row by row: memory-mapped `.npy` arrays and lazy columns (files decoded on demand).

`gather(column, rows)` is how a Dataset reads a batch: an in-memory array is indexed, a lazy column reads
only those rows. A memory-mapped array would keep every page it ever touched resident (and counted in the
process's memory) until the mapping closes, so MappedColumn drops its pages after each read: a data set
larger than RAM trains with a bounded footprint."""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from compiler.errors import UserError

CHUNK_BYTES = 8 << 20           # bytes of rows read per block when a check scans a lazy column


class LazyColumn:
    """A column whose rows are produced on demand. Subclasses set `shape`, `dtype` and implement `take`."""

    shape: tuple[int, ...]
    dtype: np.dtype
    source: str = ""
    finite: bool = False            # True when every value is finite by construction (no scan needed)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        return self.take(np.asarray(rows, dtype=np.int64))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.take(np.arange(len(self)))
        return a if dtype is None else a.astype(dtype)

    def astype(self, dtype: Any, copy: bool = True) -> "LazyColumn":
        return Converted(self, np.dtype(dtype)) if np.dtype(dtype) != self.dtype else self

    def chunks(self, rows: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first position, block of rows) over the column (or over `rows`), a few MB at a time."""
        n = len(self) if rows is None else len(rows)
        per = max(1, CHUNK_BYTES // max(1, int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize))
        for s in range(0, n, per):
            pos = np.arange(s, min(s + per, n))
            yield s, self.take(pos if rows is None else rows[pos])


class Converted(LazyColumn):
    """A lazy column read as another dtype (batch by batch: the whole column is never converted)."""

    def __init__(self, base: LazyColumn, dtype: np.dtype):
        self.base, self.dtype, self.shape, self.source = base, dtype, base.shape, base.source
        self.finite = base.finite

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.base.take(rows).astype(self.dtype)


class MappedColumn(LazyColumn):
    """One `.npy` file, opened memory-mapped (np.load(mmap_mode='r'), allow_pickle=False): nothing is read
    until a batch asks for its rows.

    Rows are copied out with positional reads (os.preadv) rather than by touching the mapping: a fault on
    a file mapping maps a whole page-cache folio (up to megabytes on current kernels), so gathering 512
    random rows through the map made most of a file resident at once. With preadv only the batch itself is
    in the process's memory. A Fortran-ordered file (or a system without preadv) is gathered through the
    map, whose pages are then dropped (MADV_DONTNEED)."""

    def __init__(self, path: str | Path):
        self.source = str(path)
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e).lower() or "object" in str(e).lower():
                raise UserError(f"'{path}' holds pickled Python objects, which specc refuses to load",
                                hint="save plain numeric arrays with numpy.save") from None
            raise UserError(f"'{path}' is not a valid .npy file: {e}") from None
        except OSError as e:
            raise UserError(f"cannot read '{path}': {e.strerror or e}") from None
        if not isinstance(self.array, np.ndarray) or self.array.ndim == 0:
            raise UserError(f"'{path}' holds a scalar, not an array of samples")
        self.shape, self.dtype = tuple(self.array.shape), self.array.dtype
        self._map = getattr(self.array, "_mmap", None)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.offset = getattr(self.array, "offset", None)
        self.fd = None
        if hasattr(os, "preadv") and self.array.flags.c_contiguous and self.offset is not None and self.row_bytes:
            self.fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self.fd is None:
            out = np.array(self.array[rows])
            self.release()
            return out
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        n = len(self)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {self.source} ({n} rows)")
        rows = np.where(rows < 0, rows + n, rows)
        if len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
            self._read(flat.reshape(-1), int(rows[0]))           # a contiguous block: one read
        else:
            for i, r in enumerate(rows.tolist()):
                self._read(flat[i], r)
        return out

    def _read(self, buf: np.ndarray, row: int) -> None:
        want, at = buf.nbytes, self.offset + row * self.row_bytes
        got = os.preadv(self.fd, [memoryview(buf)], at)
        while got < want:                                        # a short read: continue where it stopped
            more = os.preadv(self.fd, [memoryview(buf[got:])], at + got)
            if more <= 0:
                raise UserError(f"'{self.source}' is shorter than its header says (truncated file?)")
            got += more

    def release(self) -> None:
        """Drop the pages read so far from this process (they stay in the OS page cache)."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._map.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


def gather(column: Any, rows: Any) -> np.ndarray:
    """The rows `rows` (an index array or a slice) of a column, as an in-memory array."""
    if isinstance(column, LazyColumn):
        return column[rows]
    return np.asarray(column[rows])


def chunks(column: Any, rows: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of a column for checks: the whole array at once when it is in memory."""
    if isinstance(column, LazyColumn):
        yield from column.chunks(rows)
    else:
        yield 0, np.asarray(column if rows is None else column[rows])
