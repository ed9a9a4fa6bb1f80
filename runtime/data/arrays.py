"""Array sources: an `.npz` file, or a folder of `.npy` files (one per input, memory-mapped)."""
from __future__ import annotations

from pathlib import Path

from compiler.errors import UserError

from ..checkpoint import read_npz
from .columns import MappedColumn
from .fields import Read


def read_npz_source(path: str) -> Read:
    return Read(read_npz(path, "data file"), str(path), pair_by_kind=False)


def read_npy_folder(path: str) -> Read:
    """Every NAME.npy in the folder as the field NAME, memory-mapped: rows are read batch by batch."""
    files = sorted(Path(path).glob("*.npy"))
    if not files:
        raise UserError(f"data folder '{path}' holds no .npy files",
                        hint="save one array per input: numpy.save('FOLDER/image.npy', x), "
                             "numpy.save('FOLDER/label.npy', y)")
    return Read({f.stem: MappedColumn(f) for f in files}, f"{path}{'' if path.endswith('/') else '/'}",
                pair_by_kind=False)
