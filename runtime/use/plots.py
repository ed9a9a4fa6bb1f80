"""Pictures for the `specc sample/interpolate/saliency/attack/attention/boundary` commands.

Image grids are written by a small PNG encoder (zlib), so they need nothing beyond NumPy. Heat maps,
attention matrices and decision boundaries use matplotlib (the `plot` extra, as curves.png does); without
it the command still writes its arrays and prints a note.
"""
from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compiler.files import atomic_write, atomic_write_bytes

NO_MATPLOTLIB = "note: matplotlib is not installed, so {} was not drawn (pip install matplotlib); the arrays are in {}"


def to_images(arr: np.ndarray) -> np.ndarray | None:
    """[n, H, W] (grey) or [n, H, W, 3] (colour) in [0, 1] from [n, C, H, W], [n, H, W] or [n, F] with F a
    square; None when the array does not look like images."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] in (1, 3):
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    elif a.ndim == 2 and math.isqrt(a.shape[1]) ** 2 == a.shape[1] and a.shape[1] > 1:
        s = math.isqrt(a.shape[1])
        a = a.reshape(len(a), s, s)
    elif a.ndim != 3:
        return None
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0 and hi <= 1:
        return a
    if lo >= -1 and hi <= 1:                      # tanh outputs, images scaled to [-1, 1]
        return (a + 1) / 2
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def grid(images: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """Tile [n, H, W(, 3)] images into one picture, `cols` per row, on a white background."""
    n, h, w = images.shape[:3]
    rows = max(1, math.ceil(n / cols))
    shape = (rows * (h + gap) + gap, cols * (w + gap) + gap) + images.shape[3:]
    out = np.ones(shape)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[gap + r * (h + gap):gap + r * (h + gap) + h, gap + c * (w + gap):gap + c * (w + gap) + w] = im
    return out


def png_bytes(img: np.ndarray) -> bytes:
    """An 8-bit grey or RGB PNG of a [H, W] or [H, W, 3] array in [0, 1]."""
    a = np.clip(np.round(np.asarray(img) * 255), 0, 255).astype(np.uint8)
    colour = 2 if a.ndim == 3 else 0
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_grid(path: str | Path, images: np.ndarray, cols: int, scale: int | None = None) -> None:
    """A grid PNG, each pixel enlarged so that small images (8×8 digits) stay visible."""
    g = grid(images, cols)
    k = scale or max(1, 128 // max(images.shape[1], 1))
    g = np.repeat(np.repeat(g, k, axis=0), k, axis=1)
    atomic_write_bytes(path, png_bytes(g))


def figure(path: str | Path, arrays_path: str | Path, draw: Callable[[Any], None],
           size: tuple[float, float] = (5, 4)) -> bool:
    """Draw with matplotlib into `path`; False (and a note) when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(NO_MATPLOTLIB.format(path, arrays_path), file=sys.stderr)
        return False
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def heat_maps(images: np.ndarray | None, heats: np.ndarray, titles: list[str]) -> Callable[[Any], None]:
    """One column per example: the image (grey) above its heat map; one colour scale for all maps."""
    def draw(fig: Any) -> None:
        n, rows = len(heats), 1 if images is None else 2
        top = float(max(heats.max(), 1e-12))
        im = None
        for i in range(n):
            if images is not None:
                ax = fig.add_subplot(rows, n, i + 1)
                ax.imshow(images[i], cmap="gray" if images[i].ndim == 2 else None, vmin=0, vmax=1)
                ax.set_title(titles[i], fontsize=9)
                ax.axis("off")
            ax = fig.add_subplot(rows, n, (rows - 1) * n + i + 1)
            im = ax.imshow(heats[i], cmap="hot", vmin=0, vmax=top)
            ax.axis("off")
        fig.colorbar(im, ax=fig.axes, shrink=0.8)
    return draw
