"""Image augmentation for training batches: random crop with padding, horizontal flip, rotation, gaussian
noise and cutout. Vectorised over the batch, driven by one seeded NumPy Generator, never applied to
validation or test data.

The input is `[N, C, H, W]` (or `[N, H, W]`); the spatial dims are the last two. Ops, in the order given:

| op | spec forms | what it does |
|---|---|---|
| random_crop | `{random_crop: {size: 28, padding: 2}}`, `{random_crop: 28}` | zero-pad by `padding` then crop `size` (int or [h, w]; default: the input size) at a random place |
| horizontal_flip | `{horizontal_flip: 0.5}`, `horizontal_flip` | mirror left-right with probability p (default 0.5) |
| rotation | `{rotation: 15}`, `{rotation: {degrees: 15, mode: nearest}}` | rotate about the centre by a uniform angle in [−deg, deg]; bilinear (default) or nearest; zeros outside |
| gaussian_noise | `{gaussian_noise: 0.05}`, `{gaussian_noise: {std: 0.05}}` | add N(0, std²) noise |
| cutout | `{cutout: 6}`, `{cutout: {size: 6}}` | zero one size×size square (clipped at the border) centred at a random pixel |
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from compiler.errors import UserError, did_you_mean

OPS: dict[str, tuple[str, Callable]] = {}


def _op(name: str, primary: str):
    def register(fn: Callable) -> Callable:
        OPS[name] = (primary, fn)
        return fn
    return register


def _hw(x: np.ndarray) -> tuple[int, int]:
    return x.shape[-2], x.shape[-1]


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return int(v[0]), int(v[1])
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    raise UserError(f"augment {what} must be an integer or a pair [h, w], got {v!r}")


@_op("random_crop", "size")
def random_crop(x: np.ndarray, rng: np.random.Generator, size: Any = None, padding: Any = 0) -> np.ndarray:
    h, w = _hw(x)
    ch, cw = _pair(size, "random_crop size") if size is not None else (h, w)
    ph, pw = _pair(padding, "random_crop padding")
    if ch > h + 2 * ph or cw > w + 2 * pw:
        raise UserError(f"random_crop size {ch}×{cw} is larger than the padded image {h + 2 * ph}×{w + 2 * pw}")
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    xp = np.pad(x, pad) if ph or pw else x
    n = x.shape[0]
    oy = rng.integers(0, h + 2 * ph - ch + 1, size=n)
    ox = rng.integers(0, w + 2 * pw - cw + 1, size=n)
    rows = oy[:, None] + np.arange(ch)                      # [n, ch]
    cols = ox[:, None] + np.arange(cw)                      # [n, cw]
    lead = xp.reshape(n, -1, xp.shape[-2], xp.shape[-1])    # [n, C, H', W']
    out = lead[np.arange(n)[:, None, None, None], np.arange(lead.shape[1])[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]
    return out.reshape(*x.shape[:-2], ch, cw)


@_op("horizontal_flip", "p")
def horizontal_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    flip = rng.random(x.shape[0]) < p
    out = x.copy()
    out[flip] = x[flip][..., ::-1]
    return out


@_op("rotation", "degrees")
def rotation(x: np.ndarray, rng: np.random.Generator, degrees: float = 10.0, mode: str = "bilinear") -> np.ndarray:
    if mode not in ("bilinear", "nearest"):
        raise UserError(f"rotation mode must be bilinear or nearest, got {mode!r}")
    n = x.shape[0]
    h, w = _hw(x)
    theta = np.deg2rad(rng.uniform(-degrees, degrees, size=n))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")   # [h, w]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # inverse mapping: the source pixel of each output pixel
    sy = cos * yy - sin * xx + cy                                               # [n, h, w]
    sx = sin * yy + cos * xx + cx
    lead = x.reshape(n, -1, h, w)
    ni = np.arange(n)[:, None, None]
    if mode == "nearest":
        iy, ix = np.rint(sy).astype(np.int64), np.rint(sx).astype(np.int64)
        ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        vals = lead[ni, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]      # [n, h, w, C]
        out = np.where(ok[..., None], vals, 0).astype(x.dtype)
    else:
        y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
        fy, fx = (sy - y0).astype(x.dtype), (sx - x0).astype(x.dtype)
        out = np.zeros(lead.shape[:1] + (h, w, lead.shape[1]), dtype=x.dtype)
        for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                            (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            iy, ix = y0 + dy, x0 + dx
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            vals = lead[ni, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
            out += np.where(ok[..., None], vals * wgt[..., None], 0).astype(x.dtype)
    return np.moveaxis(out, -1, 1).reshape(x.shape)


@_op("gaussian_noise", "std")
def gaussian_noise(x: np.ndarray, rng: np.random.Generator, std: float = 0.1) -> np.ndarray:
    return (x + rng.standard_normal(x.shape, dtype=np.float32).astype(x.dtype) * np.asarray(std, x.dtype))


@_op("cutout", "size")
def cutout(x: np.ndarray, rng: np.random.Generator, size: Any = 8) -> np.ndarray:
    n = x.shape[0]
    h, w = _hw(x)
    sh, sw = _pair(size, "cutout size")
    cy, cx = rng.integers(0, h, size=n), rng.integers(0, w, size=n)
    y0, x0 = (cy - sh // 2)[:, None], (cx - sw // 2)[:, None]
    rows = (np.arange(h) >= y0) & (np.arange(h) < y0 + sh)                  # [n, h]
    cols = (np.arange(w) >= x0) & (np.arange(w) < x0 + sw)                  # [n, w]
    mask = rows[:, :, None] & cols[:, None, :]                              # [n, h, w]
    shape = (n,) + (1,) * (x.ndim - 3) + (h, w)
    return np.where(mask.reshape(shape), np.zeros((), x.dtype), x)


@dataclass
class Step:
    name: str
    kwargs: dict[str, Any]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return OPS[self.name][1](x, rng, **self.kwargs)


class Augmenter:
    """The `train.augment` pipeline for one input: `aug(batch_dict, rng)` returns a new batch dict."""

    def __init__(self, input: str, ops: list[Any], shape: tuple | None = None):
        self.input = input
        self.steps = [parse(o) for o in ops]
        if shape is not None and len(shape) < 3:
            raise UserError(f"augment: input '{input}' has shape {list(shape)}; image augmentation needs "
                            "[N, C, H, W] or [N, H, W]")
        if shape is not None:
            self._check_sizes(shape)

    def _check_sizes(self, shape: tuple) -> None:
        for s in self.steps:
            if s.name == "random_crop" and s.kwargs.get("size") is not None:
                ch, cw = _pair(s.kwargs["size"], "random_crop size")
                h, w = shape[-2], shape[-1]
                if isinstance(h, int) and isinstance(w, int) and (ch, cw) != (h, w):
                    raise UserError(f"augment: random_crop size {ch}×{cw} differs from input "
                                    f"'{self.input}' ({h}×{w}); the model expects {h}×{w}",
                                    hint=f"use size {h} with padding for translation")

    def __call__(self, batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        x = batch[self.input]
        for s in self.steps:
            x = s(x, rng)
        return {**batch, self.input: np.ascontiguousarray(x, dtype=batch[self.input].dtype)}


def parse(item: Any) -> Step:
    """One augment entry: 'name', {name: primary_value} or {name: {kwargs}}."""
    if isinstance(item, str):
        name, value = item, None
    elif isinstance(item, dict) and len(item) == 1:
        name, value = next(iter(item.items()))
    else:
        raise UserError(f"augment ops are written 'name' or {{name: value}}, got {item!r}",
                        hint="e.g. {random_crop: {size: 28, padding: 2}} or {horizontal_flip: 0.5}")
    if name not in OPS:
        raise UserError(f"unknown augment op '{name}'",
                        hint=did_you_mean(name, OPS) or f"augment ops: {', '.join(OPS)}")
    primary, fn = OPS[name]
    if value is None:
        kwargs = {}
    elif isinstance(value, dict):
        kwargs = dict(value)
    else:
        kwargs = {primary: value}
    import inspect
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("x", "rng")]
    for k in kwargs:
        if k not in allowed:
            raise UserError(f"augment op {name} has no setting '{k}'",
                            hint=did_you_mean(k, allowed) or f"its settings: {', '.join(allowed)}")
    return Step(name, kwargs)
