"""Image folders: one sub-folder per class (the torchvision ImageFolder / Keras convention), PNG and JPEG.

Fields: `image` (float32 [N, C, H, W] in [0, 1], decoded batch by batch with Pillow, converted to
grayscale (C = 1) or RGB (C = 3) and resized to H×W) and `label` (int64 class indices; the class names,
sorted folder names unless `classes` orders them, are saved with the checkpoint)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph

from .columns import LazyColumn
from .fields import Read

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading image folders needs Pillow, which is not installed",
                        hint="pip install 'specc[images]' (or pip install pillow)") from None
    return Image


class ImageColumn(LazyColumn):
    """Image files decoded on demand into float32 [C, H, W] in [0, 1]."""

    finite = True

    def __init__(self, files: list[Path], size: tuple[int, int, int], source: str):
        self.files, self.size, self.source = files, size, source
        self.shape = (len(files), *size)
        self.dtype = np.dtype(np.float32)
        self.Image = pillow()

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.size), dtype=np.float32)
        for i, r in enumerate(rows):
            out[i] = self.decode(self.files[int(r)])
        return out

    def decode(self, path: Path) -> np.ndarray:
        c, h, w = self.size
        try:
            with self.Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), self.Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / np.float32(255.0)
        except (OSError, ValueError, self.Image.DecompressionBombError) as e:
            raise UserError(f"image '{path}' cannot be decoded: {e}",
                            hint="remove or replace the file (PNG and JPEG are read)") from None
        return a[None] if c == 1 else a.transpose(2, 0, 1)


def image_input(graph: Graph, needed: list[str], explicit: dict[str, str]) -> str | None:
    """The spec input the images feed: mapped explicitly, named `image`, or the one [N, C, H, W] float input."""
    for k, v in explicit.items():
        if v == "image":
            return k
    if "image" in graph.inputs:
        return "image"
    cands = [k for k in needed if graph.inputs[k].dtype == "float32" and graph.inputs[k].rank == 4]
    return cands[0] if len(cands) == 1 else None


def read_images(path: str, src: Any, graph: Graph, needed: list[str], derived: dict[str, Any] | None = None
                ) -> Read:
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"image folder '{path}' not found" if not root.exists() else
                        f"'{path}' is a file; an image source is a folder with one sub-folder per class")
    size = tuple(src.size) if src.size else None
    if size is None:
        name = image_input(graph, needed, src.inputs)
        t = graph.inputs.get(name) if name else None
        if t is None or t.rank != 4 or not all(isinstance(d, int) for d in t.shape[1:]):
            raise UserError(f"image folder '{path}': cannot tell the image size from the spec "
                            f"({'input ' + repr(name) + ' is ' + str(t) if t is not None else 'no [N, C, H, W] input'})",
                            hint="give it: {images: PATH, size: [C, H, W]}")
        size = tuple(t.shape[1:])
    if len(size) != 3 or size[0] not in (1, 3):
        raise UserError(f"image folder '{path}': size {list(size)} is not [C, H, W] with C 1 (grayscale) or 3 (RGB)")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    known = (derived or {}).get("classes") or src.classes
    classes = list(known) if known else folders
    if not folders:
        raise UserError(f"image folder '{path}' has no class sub-folders",
                        hint="put the images of each class in a folder named after it: PATH/cat/1.png, PATH/dog/2.png")
    unknown = [f for f in folders if f not in classes]
    if unknown:
        raise UserError(f"image folder '{path}': class folder '{unknown[0]}' is not one of the classes "
                        f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})",
                        hint="the classes are fixed when training starts (saved with the checkpoint)")
    files: list[Path] = []
    labels: list[int] = []
    for c in folders:
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in EXTENSIONS and not f.name.startswith("."):
                files.append(f)
                labels.append(classes.index(c))
    if not files:
        raise UserError(f"image folder '{path}' holds no images ({', '.join(EXTENSIONS)})")
    return Read({"image": ImageColumn(files, size, str(path)), "label": np.asarray(labels, dtype=np.int64)},
                str(path), {"classes": classes}, defaults={}, pair_by_kind=True)
