"""Checkpoints: `.npz` files of state_dict arrays plus metadata, written atomically, read without pickle.

Metadata lives in the same file under keys starting with `__meta__.` (a JSON string) and
`__opt__.` (optimiser state arrays), so a checkpoint is one self-describing file.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError
from compiler.files import atomic_write

META = "__meta__"
OPT = "__opt__."


def read_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an .npz, refusing pickled content and corrupt files with a clear message."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} '{path}' not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise UserError(f"{what} '{path}' holds pickled Python objects, which specc refuses to load",
                            hint="save plain numeric arrays (numpy.savez with numeric dtypes)") from None
        raise UserError(f"{what} '{path}' is not a valid .npz file: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise UserError(f"{what} '{path}' is not a valid .npz file ({type(e).__name__}: {e})") from None


def save(model: Any, path: str | Path, meta: dict[str, Any] | None = None,
         optimizer_state: dict[str, np.ndarray] | None = None) -> None:
    """Write model.state_dict() (+ metadata, + optimiser state) to `path` atomically."""
    arrays: dict[str, np.ndarray] = dict(model.state_dict())
    info = {"spec_hash": model.graph.spec_hash, "spec_name": model.graph.name, **(meta or {})}
    arrays[META] = np.asarray(json.dumps(info))
    for k, v in (optimizer_state or {}).items():
        arrays[OPT + k] = np.asarray(v)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def split(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """(state_dict, metadata, optimiser state) from a checkpoint's arrays."""
    meta: dict[str, Any] = {}
    if META in arrays:
        try:
            meta = json.loads(str(arrays[META]))
        except (ValueError, TypeError):
            meta = {}
    state = {k: v for k, v in arrays.items() if k != META and not k.startswith(OPT)}
    opt = {k[len(OPT):]: v for k, v in arrays.items() if k.startswith(OPT)}
    return state, meta, opt


def load(model: Any, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights into `model`; returns the checkpoint's metadata (with optimiser state under 'optimizer')."""
    state, meta, opt = split(read_npz(path, "checkpoint"))
    model.load_state_dict(state, strict=strict)
    if opt:
        meta["optimizer"] = opt
    return meta
