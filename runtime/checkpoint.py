"""Checkpoints: `.npz` files of state_dict arrays plus metadata, written atomically, read without pickle.

Metadata lives in the same file under the key `__meta__` (a JSON string), and optimiser state arrays under
keys starting with `__opt__.`, so a checkpoint is one self-describing file.
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


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NPY_MAGIC = b"\x93NUMPY"


def _kind_of(what: str) -> str:
    return "checkpoint" if ("checkpoint" in what or "weights" in what) else "file"


def read_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an .npz, refusing pickled content and corrupt files with a clear message."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} '{path}' is a folder, not an .npz file")
    if not p.is_file():
        raise UserError(f"{what} '{path}' not found")
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise UserError(f"cannot read {what} '{path}': {e.strerror or e}") from None
    if head.startswith(NPY_MAGIC):
        raise UserError(f"{what} '{path}' is a .npy array, not an .npz {_kind_of(what)}",
                        hint="an .npz holds named arrays: numpy.savez(path, name=array, ...)")
    if not head.startswith(ZIP_MAGIC):
        if head[:1] == b"\x80":                          # a pickle stream
            raise UserError(f"{what} '{path}' holds pickled Python objects, which specc refuses to load",
                            hint="save plain numeric arrays (numpy.savez with numeric dtypes)")
        raise UserError(f"{what} '{path}' is not a valid .npz file (it is not a zip archive of arrays)")
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


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint's metadata without reading its arrays; None when the file is not a readable checkpoint."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            if META not in z.files:
                return {}
            return json.loads(str(z[META]))
    except Exception:                                       # noqa: BLE001 - any unreadable file
        return None


def check_numeric(state: dict[str, np.ndarray], path: str | Path, what: str = "checkpoint") -> None:
    """Refuse weights that are not numbers (string or bytes arrays would be parsed as floats)."""
    for k, v in state.items():
        if np.asarray(v).dtype.kind not in "fiub":
            raise UserError(f"{what} '{path}' holds a non-numeric array '{k}' (dtype {np.asarray(v).dtype})",
                            hint="weights must be numeric arrays (float32)")


def nonfinite(state: dict[str, np.ndarray]) -> list[str]:
    """The names of float arrays holding NaN or inf."""
    return [k for k, v in state.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]


def warn_nonfinite(state: dict[str, np.ndarray], path: str | Path) -> None:
    bad = nonfinite(state)
    if bad:
        import sys
        print(f"warning: '{path}' holds NaN/inf weights ({', '.join(bad[:5])}"
              f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}); the outputs will not be finite",
              file=sys.stderr)


def _plain(v: Any) -> Any:
    """NumPy scalars and arrays in metadata as the Python numbers and lists they hold."""
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    raise TypeError(f"checkpoint metadata must be JSON data (numbers, strings, lists, dicts), "
                    f"not {type(v).__name__}")


def save(model: Any, path: str | Path, meta: dict[str, Any] | None = None,
         optimizer_state: dict[str, np.ndarray] | None = None) -> None:
    """Write model.state_dict() (+ metadata, + optimiser state) to `path` atomically."""
    arrays: dict[str, np.ndarray] = dict(model.state_dict())
    info = {"spec_hash": model.graph.spec_hash, "spec_name": model.graph.name, **(meta or {})}
    arrays[META] = np.asarray(json.dumps(info, default=_plain))
    for k, v in (optimizer_state or {}).items():
        arrays[OPT + k] = np.asarray(v)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write, make_parents=True)


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
    check_numeric(state, path)
    model.load_state_dict(state, strict=strict)
    if opt:
        meta["optimizer"] = opt
    return meta
