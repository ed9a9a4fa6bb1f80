"""Built-in 2-D toy sets for classifiers and decision-boundary plots: moons, circles, blobs, spirals.

Each part is drawn from its own seeded generator ([seed, part, set]), so the train part does not change
when n_test does. Classes are balanced (sample i has class i mod classes, then shuffled). Arrays: `x`
float32 [2], `label` int64 and, for two classes, `target` float32 [1] (0.0/1.0, for bce losses).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .builtin import Array, Builtin, Option, with_all

PART_SEED = {"train": 0, "test": 1}


def _labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def moons(rng: np.random.Generator, n: int, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as sklearn.datasets.make_moons, angles drawn at random)."""
    y = _labels(rng, n, 2)
    t = rng.uniform(0, np.pi, n)
    x = np.where(y[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return x + rng.normal(0, o["noise"], x.shape), y


def circles(rng: np.random.Generator, n: int, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A circle of radius 1 (class 0) around one of radius `factor` (class 1)."""
    y = _labels(rng, n, 2)
    t = rng.uniform(0, 2 * np.pi, n)
    r = np.where(y == 0, 1.0, o["factor"])
    x = r[:, None] * np.c_[np.cos(t), np.sin(t)]
    return x + rng.normal(0, o["noise"], x.shape), y


def blobs(rng: np.random.Generator, n: int, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs (std `noise`) centred on a circle of radius 5: two blobs are linearly separable."""
    k = o["classes"]
    y = _labels(rng, n, k)
    angle = 2 * np.pi * np.arange(k) / k
    centres = 5.0 * np.c_[np.cos(angle), np.sin(angle)]
    return centres[y] + rng.normal(0, o["noise"], (n, 2)), y


def spirals(rng: np.random.Generator, n: int, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`classes` interleaved spiral arms of 1.5 turns, radius 0..1."""
    k = o["classes"]
    y = _labels(rng, n, k)
    t = rng.uniform(0.05, 1.0, n)
    angle = 3 * np.pi * t + 2 * np.pi * y / k
    x = t[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    return x + rng.normal(0, o["noise"], x.shape), y


def _make(name: str, fn: Callable, salt: int):
    def make(opts: dict[str, Any], part: str) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([opts["seed"], PART_SEED[part], salt])
        x, y = fn(rng, opts["n"] if part == "train" else opts["n_test"], opts)
        out = {"x": x.astype(np.float32), "label": y}
        if opts.get("classes", 2) == 2:
            out["target"] = y.astype(np.float32)[:, None]
        return out
    return with_all(make)


def _arrays(o: dict[str, Any]) -> list[Array]:
    k = o.get("classes", 2)
    out = [Array("x", "float32", (2,), "a point in the plane"), Array("label", "int64", (), f"class 0..{k - 1}")]
    if k == 2:
        out.append(Array("target", "float32", (1,), "the class as 0.0/1.0 (for bce losses)"))
    return out


def _toy(name: str, summary: str, fn: Callable, salt: int, noise: float, extra: tuple[Option, ...] = ()) -> Builtin:
    return Builtin(
        name, summary, "2-D toy sets",
        (Option("n", 800, "training points", int, 1, 10_000_000),
         Option("n_test", 200, "test points", int, 1, 10_000_000),
         Option("noise", noise, "std of the Gaussian noise added to each point", float, 0.0, 10.0),
         *extra,
         Option("seed", 0, "random seed", int, 0, None)),
        _arrays, lambda o: {"train": o["n"], "test": o["n_test"]}, _make(name, fn, salt))


SETS = (
    _toy("moons", "two interleaving half circles (2 classes)", moons, 1, 0.1),
    _toy("circles", "a small circle inside a large one (2 classes)", circles, 2, 0.05,
         (Option("factor", 0.5, "inner radius / outer radius", float, 0.0, 0.99),)),
    _toy("blobs", "Gaussian blobs on a circle of radius 5 (2 blobs: linearly separable)", blobs, 3, 1.0,
         (Option("classes", 3, "number of blobs", int, 2, 10),)),
    _toy("spirals", "interleaved spiral arms (1.5 turns each)", spirals, 4, 0.02,
         (Option("classes", 2, "number of arms", int, 2, 10),)),
)
