"""Built-in image sets: scikit-learn's handwritten digits (resizable), and sets of digit images.

- `digits`: 1,797 8×8 grey digits shipped inside scikit-learn (no download), scaled to [0, 1], a fixed
  stratified 80/20 split (seed 0). `size` resizes them (bilinear, as torch.nn.functional.interpolate
  with align_corners=False), `channels=3` repeats the grey channel. Without options the size and channels
  follow the spec's image input ([N, 1, 28, 28] gives 28×28), with a note.
- `digit_sum`, `digit_max`: sets of `set_size` digit images (flattened) whose target is the sum or the
  maximum of their digits: permutation invariant by construction. Train sets draw their images from the
  digits' train part, test sets from the test part.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph

from .builtin import Array, Builtin, Option, with_all

SEED = 0
TEST_FRACTION = 0.2
SIZES = {"train": 1438, "test": 359}          # the stratified split of the 1,797 digits


def digits(split: str = "train") -> dict[str, np.ndarray]:
    """scikit-learn's handwritten digits: {'image': float32 [n,1,8,8] in [0,1], 'label': int64 [n]}.

    `split` is 'train' (80%), 'test' (the held-out 20%: stratified, seed 0) or 'all'."""
    images, labels = _load()
    images, labels = images.copy(), labels.copy()
    if split == "all":
        return {"image": images, "label": labels}
    train_idx, test_idx = _stratified_split(labels, TEST_FRACTION, SEED)
    idx = {"train": train_idx, "test": test_idx}.get(split)
    if idx is None:
        raise UserError(f"the digits data set has parts train, test and all, not '{split}'")
    return {"image": images[idx], "label": labels[idx]}


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the built-in digits data set needs scikit-learn, which is not installed",
                        hint="pip install scikit-learn (or pip install -e .[data])") from None
    d = load_digits()
    images = (np.asarray(d.images, dtype=np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    return images, np.asarray(d.target, dtype=np.int64)


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


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear interpolation with align_corners=False (PyTorch's convention)."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = src - i0
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w)
    np.add.at(m, (np.arange(n_out), i1), w)
    return m


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [n, C, H, W] images to size×size (float32)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    rh, rw = resize_matrix(h, size), resize_matrix(w, size)
    out = np.einsum("ih,nchw,jw->ncij", rh, images.astype(np.float64), rw, optimize=True)
    return out.astype(np.float32)


def _digits_subset(opts: dict[str, Any], part: str) -> dict[str, np.ndarray]:
    """The part's digits of the classes `classes` ('LO-HI' or one digit); with `limit`, that many of them drawn
    at random (seed 0), in their order. (The first ones would come from a few writers: scikit-learn's digits
    are ordered by writer, and 100 of them drawn at random teach a classifier more than the first 100.)"""
    d = digits(part)
    lo, hi = parse_classes(opts["classes"])
    keep = np.flatnonzero((d["label"] >= lo) & (d["label"] <= hi))
    if opts["limit"] and opts["limit"] < len(keep):
        keep = np.sort(np.random.default_rng(SEED).permutation(keep)[: opts["limit"]])
    return {"image": d["image"][keep], "label": d["label"][keep]}


def parse_classes(text: str) -> tuple[int, int]:
    """'5-9' -> (5, 9); '3' -> (3, 3); anything else is a UserError."""
    m = re.fullmatch(r"\s*(\d)\s*(?:-\s*(\d)\s*)?", str(text))
    if not m or int(m.group(2) or m.group(1)) < int(m.group(1)):
        raise UserError(f"option classes={text!r} of builtin:digits: expected a digit or a range LO-HI "
                        "of digits 0..9, e.g. classes=0-4")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def _digits_sizes(opts: dict[str, Any]) -> dict[str, int]:
    if opts["classes"] == "0-9" and not opts["limit"]:
        return dict(SIZES)
    return {p: len(_digits_subset(opts, p)["label"]) for p in ("train", "test")}


def _digits_make(opts: dict[str, Any], part: str) -> dict[str, np.ndarray]:
    d = _digits_subset(opts, part) if part != "all" else {
        k: np.concatenate([_digits_subset(opts, "train")[k], _digits_subset(opts, "test")[k]])
        for k in ("image", "label")}
    img = resize(d["image"], opts["size"])
    if opts["channels"] == 3:
        img = np.repeat(img, 3, axis=1)
    if opts["signed"]:
        img = img * np.float32(2) - np.float32(1)
    return {"image": img, "label": d["label"]}


def _image_input(graph: Graph, needed: list[str]) -> str | None:
    """The one float [N, C, H, W] input (C 1 or 3, square) a digits image can be resized to."""
    cands = [k for k in needed if graph.inputs[k].dtype == "float32" and graph.inputs[k].rank == 4]
    cands = [k for k in cands if all(isinstance(d, int) for d in graph.inputs[k].shape[1:])
             and graph.inputs[k].shape[1] in (1, 3) and graph.inputs[k].shape[2] == graph.inputs[k].shape[3]]
    if "image" in cands:
        return "image"
    return cands[0] if len(cands) == 1 else None


def _digits_auto(graph: Graph, needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    k = _image_input(graph, needed)
    if k is None:
        return {}
    c, h = graph.inputs[k].shape[1], graph.inputs[k].shape[2]
    out: dict[str, Any] = {}
    if "size" not in given and h != 8 and 8 <= h <= MAX_SIZE:
        out["size"] = h
    if "channels" not in given and c == 3:
        out["channels"] = 3
    if out:
        size, ch = out.get("size", given.get("size", 8)), out.get("channels", given.get("channels", 1))
        out["note"] = (f"builtin:digits: the 8×8 grey digits are resized to {ch}×{size}×{size} (bilinear"
                       f"{', grey repeated in 3 channels' if ch == 3 else ''}) to fit input '{k}' "
                       f"[{', '.join(map(str, graph.inputs[k].shape))}]; write builtin:digits?size={size}"
                       f"{',channels=3' if ch == 3 else ''} to say so in the spec")
    return out


MAX_SIZE = 64

DIGITS = Builtin(
    "digits", "scikit-learn's 1,797 handwritten digits (8×8 grey, 10 classes), resizable", "images",
    (Option("size", 8, "image side in pixels (bilinear resize)", int, 8, MAX_SIZE, follows_spec=True),
     Option("channels", 1, "1 (grey) or 3 (grey repeated as RGB)", int, choices=("1", "3"), follows_spec=True),
     Option("signed", False, "pixels in [-1, 1] (for a tanh generator's real images) instead of [0, 1]", bool),
     Option("classes", "0-9", "the digits kept, LO-HI or one digit (labels stay the digits)", str),
     Option("limit", 0, "keep LIMIT images of each part, drawn at random (seed 0; 0: all)", int, 0, 1797)),
    lambda o: [Array("image", "float32", (o["channels"], o["size"], o["size"]),
                     f"pixels in {'[-1, 1]' if o['signed'] else '[0, 1]'}"),
               Array("label", "int64", (), "the digit, 0..9")],
    _digits_sizes,
    _digits_make,
    auto=_digits_auto,
    notes=("fixed stratified 80/20 split (seed 0); `python tools/digits.py` writes the same parts as .npz",),
)


# -- sets of digits -----------------------------------------------------------------------------------
def _set_make(reduce: str):
    def make(opts: dict[str, Any], part: str) -> dict[str, np.ndarray]:
        d = digits(part)
        n = opts["n"] if part == "train" else opts["n_test"]
        rng = np.random.default_rng([opts["seed"], 0 if part == "train" else 1, 17])
        pick = rng.integers(0, len(d["label"]), size=(n, opts["set_size"]))
        img = resize(d["image"], opts["size"]).reshape(len(d["label"]), -1)
        digits_ = d["label"][pick]                                     # [n, set_size]
        value = digits_.sum(axis=1) if reduce == "sum" else digits_.max(axis=1)
        return {"set": img[pick], "target": value.astype(np.float32)[:, None],
                "label": value.astype(np.int64), "digits": digits_}
    return with_all(make)


def _set_auto(graph: Graph, needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    cands = [k for k in needed if graph.inputs[k].dtype == "float32" and graph.inputs[k].rank == 3]
    k = "set" if "set" in cands else cands[0] if len(cands) == 1 else None
    if k is None:
        return {}
    _, s, e = graph.inputs[k].shape
    out: dict[str, Any] = {}
    if isinstance(s, int) and "set_size" not in given and 2 <= s <= 16:
        out["set_size"] = s
    side = math.isqrt(e) if isinstance(e, int) else 0
    if "size" not in given and side * side == e and side != 8 and 4 <= side <= 16:
        out["size"] = side
        out["note"] = (f"builtin:digit_sum/digit_max: the 8×8 digits are resized to {side}×{side} (bilinear) "
                       f"to fit input '{k}' ({e} features per element); with element 64 they keep their 8×8 "
                       "pixels")
    return out


def _set_builtin(name: str, reduce: str, what: str) -> Builtin:
    return Builtin(
        name, f"sets of digit images → the {what} of their digits (permutation invariant)", "sets",
        (Option("set_size", 4, "images per set", int, 2, 16, follows_spec=True),
         Option("size", 8, "image side before flattening (bilinear resize)", int, 4, 16, follows_spec=True),
         Option("n", 2000, "training sets", int, 1, 1_000_000),
         Option("n_test", 500, "test sets", int, 1, 1_000_000),
         Option("seed", 0, "random seed", int, 0, None)),
        lambda o: [Array("set", "float32", (o["set_size"], o["size"] ** 2), "flattened digit images, any order"),
                   Array("target", "float32", (1,), f"the {what} as a float (regression)"),
                   Array("label", "int64", (), f"the {what} as a class index"),
                   Array("digits", "int64", (o["set_size"],), "the digit of each image")],
        lambda o: {"train": o["n"], "test": o["n_test"]},
        _set_make(reduce),
        auto=_set_auto,
        notes=("train sets use the digits' train images, test sets its test images",),
    )


SETS = (DIGITS, _set_builtin("digit_sum", "sum", "sum"), _set_builtin("digit_max", "max", "maximum"))
