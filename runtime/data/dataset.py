"""The Dataset container: named arrays cut into mini-batches, and seeded held-out splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from compiler.errors import UserError


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
