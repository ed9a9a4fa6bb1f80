"""The Dataset container: named columns cut into mini-batches, seeded held-out splits, batches prepared ahead.

A column is a NumPy array, a memory-mapped `.npy` array or a lazy column (image files decoded on demand:
`columns.LazyColumn`). A subset (a split, a held-out fraction) is an index array over the same columns, so
memory maps stay maps and image folders stay files: rows are gathered batch by batch."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from compiler.errors import UserError

from .columns import gather


class Dataset:
    """Named columns; those not in `static` share a first dimension (the samples) and are cut into batches.

    Columns whose input has a fixed first size (a graph's adjacency matrix, a lookup table: `static`) are
    passed whole with every batch. With no batched column at all the data set is one sample: one batch.
    `index` (optional) selects and orders the rows this data set holds."""

    def __init__(self, arrays: Mapping[str, Any], source: str = "<arrays>", meta: dict[str, Any] | None = None,
                 static: frozenset = frozenset(), index: np.ndarray | None = None):
        self.columns: dict[str, Any] = dict(arrays)
        self.source = source
        self.meta: dict[str, Any] = dict(meta or {})
        self.static = frozenset(static)
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.checked: tuple[Any, frozenset] | None = None      # (graph, inputs) check() passed it for

    @property
    def batched(self) -> list[str]:
        return [k for k in self.columns if k not in self.static]

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every column as an in-memory array of this data set's rows (reads them all: for small data)."""
        return {k: self.column(k) for k in self.columns}

    def column(self, name: str) -> np.ndarray:
        v = self.columns[name]
        if name in self.static:
            return np.asarray(v)
        return gather(v, self.index if self.index is not None else slice(None))

    def shape(self, name: str) -> tuple[int, ...]:
        v = self.columns[name]
        if name in self.static or self.index is None:
            return tuple(v.shape)
        return (len(self.index), *v.shape[1:])

    def __len__(self) -> int:
        b = self.batched
        if not b:
            return 1 if self.columns else 0
        return len(self.index) if self.index is not None else len(self.columns[b[0]])

    def subset(self, idx: np.ndarray, source: str | None = None) -> "Dataset":
        """The rows `idx` (positions in this data set), without copying any column."""
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.index[idx] if self.index is not None else idx
        sub = Dataset(self.columns, source or self.source, dict(self.meta), self.static, rows)
        sub.checked = self.checked                  # what holds for every row holds for a subset
        return sub

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Mini-batches in order, or in a fresh random order drawn from `rng` (one permutation per call)."""
        if not self.batched:
            yield {k: np.asarray(v) for k, v in self.columns.items()}
            return
        n = len(self)
        order = rng.permutation(n) if rng is not None else None
        for s in range(0, n, batch_size):
            pos = order[s:s + batch_size] if order is not None else np.arange(s, min(s + batch_size, n))
            rows = self.index[pos] if self.index is not None else pos
            yield {k: np.asarray(v) if k in self.static else gather(v, rows) for k, v in self.columns.items()}

    def batch_len(self, batch: Mapping[str, np.ndarray]) -> int:
        b = self.batched
        return len(batch[b[0]]) if b else 1

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {list(self.shape(k))} {v.dtype}" for k, v in self.columns.items())
        return f"Dataset({self.source}, {len(self)} samples; {shapes})"


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
    rest, held = held_out(n, fraction, seed, what)
    return (ds.subset(rest, f"{ds.source} (without {what} {fraction:g})"),
            ds.subset(held, f"{ds.source} ({what} {fraction:g})"))


def held_out(n: int, fraction: float, seed: int, what: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out) positions of n samples: the seeded draw split() makes."""
    k = int(round(fraction * n))
    perm = np.random.default_rng([seed, 7 if what == "val" else 11]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


@dataclass
class Splits:
    train: Dataset | None
    val: Dataset | None
    test: Dataset | None


_DONE = object()


def prefetch(batches: Iterable[dict[str, np.ndarray]], depth: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """The same batches in the same order, each prepared by a background thread while the previous one trains.

    At most `depth` batches wait in the queue (bounded memory). An exception in the thread (a bad file, a
    decoding error) is raised here, in the caller's thread, unchanged. Leaving the loop early (break,
    Ctrl-C, an error in training) stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in batches:
                if not put(b):
                    return
            put(_DONE)
        except BaseException as e:                      # noqa: BLE001 - handed to the consumer
            put(e)

    t = threading.Thread(target=work, name="specc-prefetch", daemon=True)
    t.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)               # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                if not t.is_alive() and q.empty():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)
