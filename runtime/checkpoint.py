"""Checkpoints: `.npz` files of state_dict arrays plus metadata, written atomically, read without pickle.

Metadata lives in the same file under the key `__meta__` (a JSON string), and optimiser state arrays under
keys starting with `__opt__.`, so a checkpoint is one self-describing file.
"""
from __future__ import annotations

import json
import math
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


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an .npy stream's header, the file positioned at the data."""
    from numpy.lib import format as npy
    version = npy.read_magic(f)
    read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy version {version}")
    shape, _, dtype = read(f)
    return tuple(shape), dtype


def check_array_sizes(path: str | Path, what: str = "file") -> None:
    """Read only the headers of an .npy or .npz file and refuse, before any array is read, one that claims more
    data than the file holds (a corrupt or forged header) or more than this machine's available memory."""
    from .memory import ensure_fits, fmt_bytes
    p = Path(path)
    arrays: list[tuple[str, tuple[int, ...], np.dtype, int]] = []     # name, shape, dtype, bytes stored
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            shape, dtype = _npy_header(f)
                            stored = info.file_size - f.tell()
                        arrays.append((info.filename[:-4], shape, dtype, stored))
        else:
            with open(p, "rb") as f:
                shape, dtype = _npy_header(f)
                arrays.append((p.stem, shape, dtype, p.stat().st_size - f.tell()))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError):
        return                                  # the reader itself reports what is wrong with such a file
    total = 0
    for name, shape, dtype, stored in arrays:
        need = math.prod(shape) * dtype.itemsize
        if dtype.hasobject:
            continue                            # refused as pickled content by the reader
        if need > stored:
            raise UserError(f"{what} '{path}' is corrupt: array '{name}' claims shape {list(shape)} {dtype} "
                            f"({fmt_bytes(need)}) but the file holds {fmt_bytes(max(stored, 0))} of data for it",
                            hint="the file was cut short or its header altered; use an intact copy")
        total += need
    ensure_fits(total, f"{what} '{path}' ({len(arrays)} array{'s' if len(arrays) != 1 else ''})",
                hint="this file does not fit in memory here; use a machine with more memory")


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
    check_array_sizes(p, what)
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
    if getattr(model, "data_meta", None):     # what the training data derived (docs/data.md), for eval/run
        info.setdefault("data", model.data_meta)
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
    """Load weights into `model`; returns the checkpoint's metadata (with optimiser state under 'optimizer').

    With strict=False the keys that were skipped are in the result too, as PyTorch reports them:
    'missing_keys' (the model's, left as they were) and 'unexpected_keys' (the checkpoint's, unused). A
    checkpoint none of whose weights fit the model is refused: loading it would change nothing."""
    state, meta, opt = split(read_npz(path, "checkpoint"))
    check_numeric(state, path)
    if not strict and state and not any(k in model.state_dict() for k in state):
        names = list(model.state_dict())
        raise UserError(f"none of the {len(state)} weights in '{path}' has a name the model "
                        f"'{model.graph.name}' uses, so nothing would be loaded",
                        hint=f"its weights look like {', '.join(list(state)[:3])}; the model's like "
                             f"{', '.join(names[:3])} (specc train --init CKPT --init-map OLD=NEW renames them)")
    skipped = model.load_state_dict(state, strict=strict)
    model.pretrained |= {k for k in state if k in model.state_dict()}
    if opt:
        meta["optimizer"] = opt
    if not strict:
        meta["missing_keys"], meta["unexpected_keys"] = list(skipped.missing_keys), list(skipped.unexpected_keys)
    return meta
