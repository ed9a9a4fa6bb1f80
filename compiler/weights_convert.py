"""`specc weights convert`: another framework's weights (.npz, .safetensors, a PyTorch .pt state_dict) renamed
into a spec's state_dict names and written as a specc checkpoint.

Keys are matched by name (after `--map OLD=NEW` renames), by order (the i-th remaining source array to the
i-th remaining spec parameter: an `nn.Sequential` state_dict into a spec with named layers) or by shape
(each spec parameter takes the one source array of its shape; two candidates of one shape is refused).
Only the spec's Graph is needed (names, shapes, dtypes), so the runtime is not imported.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .ir import Graph

META, OPT = "__meta__", "__opt__."           # runtime/checkpoint.py's keys (compiler must not import runtime)
NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32,
             "bool": np.bool_}
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_POSITIONAL = re.compile(r"^(?:[A-Za-z_][\w]*\.)*\d+\.")    # `0.weight`, `features.3.bias`


# -- reading ----------------------------------------------------------------------------------
def natural_key(name: str) -> list:
    """`features.10.weight` after `features.2.weight`: numbers compared as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_source(path: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a weights file in its own order, and a note on where the order came from."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"weights file '{path}' is a folder, not a file")
    if not p.is_file():
        raise UserError(f"weights file '{path}' not found")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _read_npz(p), "file order"
    if suffix == ".safetensors":
        return _read_safetensors(p), "natural order of the names (a .safetensors file keeps no order)"
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return _read_torch(p), "state_dict order"
    raise UserError(f"cannot tell the format of '{path}' from its suffix '{p.suffix}'",
                    hint="weights files: .npz, .safetensors, .pt/.pth (a PyTorch state_dict)", code=2)


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    import zipfile
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        raise UserError(f"weights file '{p}' holds pickled Python objects or is unreadable ({e})",
                        hint="save plain numeric arrays (numpy.savez)") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise UserError(f"weights file '{p}' is not a valid .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(arrays, dict):
        raise UserError(f"weights file '{p}' is a single .npy array, not named arrays")
    return {k: v for k, v in arrays.items() if k != META and not k.startswith(OPT)}


def _read_safetensors(p: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise UserError("reading .safetensors needs the 'safetensors' package, which is not installed",
                        hint="pip install 'specc[safetensors]' (or pip install safetensors)") from None
    try:
        arrays = load_file(str(p))
    except Exception as e:                                   # noqa: BLE001 - a corrupt or bf16 file
        raise UserError(f"cannot read '{p}' as .safetensors: {e}",
                        hint="bfloat16 tensors cannot be read through numpy; save them as float32") from None
    return {k: arrays[k] for k in sorted(arrays, key=natural_key)}


def _read_torch(p: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(f"reading '{p.suffix}' files needs PyTorch, which is not installed",
                        hint="pip install torch, or save the state_dict as .npz in PyTorch: "
                             "np.savez('w.npz', **{k: v.numpy() for k, v in net.state_dict().items()})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:                                   # noqa: BLE001 - pickled modules, corrupt files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read '{p}' as a PyTorch state_dict (loaded with weights_only=True): {first}",
                        hint="save the state_dict, not the module: torch.save(net.state_dict(), path)") from None
    if isinstance(obj, dict) and not _all_tensors(obj, torch):
        inner = [k for k in CONTAINER_KEYS if isinstance(obj.get(k), dict) and _all_tensors(obj[k], torch)]
        if not inner:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise UserError(f"'{p}' is not a state_dict: '{bad}' is a {type(obj[bad]).__name__}, not a tensor",
                            hint=f"a training checkpoint keeps its weights under a key such as "
                                 f"{', '.join(CONTAINER_KEYS[:3])}; save net.state_dict() alone")
        print(f"note: reading the state_dict under '{inner[0]}' in '{p}'", file=sys.stderr)
        obj = obj[inner[0]]
    if not isinstance(obj, dict):
        raise UserError(f"'{p}' holds a {type(obj).__name__}, not a state_dict",
                        hint="save the state_dict: torch.save(net.state_dict(), path)")
    return {k: _to_numpy(v, torch) for k, v in obj.items()}


def _all_tensors(d: dict, torch: Any) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _to_numpy(t: Any, torch: Any) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


# -- mapping ----------------------------------------------------------------------------------
@dataclass
class Fate:
    key: str
    shape: tuple
    target: str | None = None
    status: str = "skipped"                   # mapped | renamed | skipped | shape mismatch
    note: str = ""


@dataclass
class Plan:
    fates: list[Fate]
    missing: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def state_keys(self) -> dict[str, str]:
        return {f.target: f.key for f in self.fates if f.status in ("mapped", "renamed") and f.target}


def parse_maps(items: Sequence[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UserError(f"--map expects OLD=NEW (a key or a key prefix), got '{item}'", code=2)
        out.append((old.strip(), new.strip()))
    return out


def _rename(key: str, maps: list[tuple[str, str]]) -> str | None:
    """The key after the first --map that applies: an exact key, else a prefix ending at a dot."""
    for old, new in maps:
        if key == old:
            return new
        if key.startswith(old + "."):
            return new + key[len(old):]
    return None


def plan_mapping(graph: Graph, source: dict[str, np.ndarray], by: str = "name",
                 maps: Sequence[tuple[str, str]] = ()) -> Plan:
    """Every source key's fate and the spec parameters left without weights."""
    params = {k: tuple(spec.shape) for k, (spec, _) in graph.params().items()}
    fates = [Fate(k, tuple(np.shape(v))) for k, v in source.items()]
    taken: set[str] = set()
    for f in fates:                                         # explicit renames first, in every mode
        new = _rename(f.key, list(maps))
        if new is not None:
            _assign(f, new, params, taken, "renamed")
    rest = [f for f in fates if f.target is None and not f.note]
    if by == "name":
        for f in rest:
            if f.key in params and f.key not in taken:
                _assign(f, f.key, params, taken, "mapped")
    elif by == "order":
        free = [k for k in params if k not in taken]
        for f, k in zip(rest, free):
            _assign(f, k, params, taken, "mapped")
    elif by == "shape":
        problems = _by_shape(rest, params, taken)
        if problems:
            return Plan(fates, [k for k in params if k not in taken], problems)
    else:
        raise UserError(f"--map-by must be name, order or shape, not '{by}'", code=2)
    for f in fates:
        if f.target is None and not f.note:
            f.note = "not in the spec" if by == "name" else "nothing left to map it to"
    return Plan(fates, [k for k in params if k not in taken])


def _assign(f: Fate, target: str, params: dict[str, tuple], taken: set[str], how: str) -> None:
    if target not in params:
        f.note = f"--map gives '{target}', which the spec does not have"
        return
    if target in taken:
        f.status, f.target, f.note = "skipped", target, f"'{target}' is already filled"
        return
    f.target = target
    if f.shape != params[target]:
        f.status, f.note = "shape mismatch", f"spec {list(params[target])}"
        return
    f.status = how
    taken.add(target)


def _by_shape(rest: list[Fate], params: dict[str, tuple], taken: set[str]) -> list[str]:
    free = [k for k in params if k not in taken]
    problems = []
    for shape in dict.fromkeys(params[k] for k in free):
        targets = [k for k in free if params[k] == shape]
        sources = [f for f in rest if f.shape == shape and f.target is None]
        if len(sources) == 1 and len(targets) == 1:
            _assign(sources[0], targets[0], params, taken, "mapped")
        elif len(sources) > 1 or (sources and len(targets) > 1):
            problems.append(f"shape {list(shape)}: {len(sources)} source arrays "
                            f"({', '.join(f.key for f in sources[:4])}{', ...' if len(sources) > 4 else ''}) "
                            f"for {len(targets)} spec parameters "
                            f"({', '.join(targets[:4])}{', ...' if len(targets) > 4 else ''})")
            for f in sources:
                f.note = "ambiguous: several arrays of this shape"
    return problems


# -- report and output -----------------------------------------------------------------------
def render(plan: Plan, params: dict[str, tuple]) -> str:
    rows = [(f.key, "×".join(map(str, f.shape)) or "scalar",
             {"mapped": "->", "renamed": "-> (--map)"}.get(f.status, f.status), f.target or "", f.note)
            for f in plan.fates]
    rows += [("", "", "missing", k, f"spec {'×'.join(map(str, params[k])) or 'scalar'}, no source array")
             for k in plan.missing]
    head = ("source key", "shape", "fate", "spec parameter", "")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()   # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths[:4]) + ("",))] + [fmt(r) for r in rows])


def build_state(graph: Graph, plan: Plan, source: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    params = graph.params()
    out = {}
    for target, key in plan.state_keys.items():
        arr = np.asarray(source[key])
        if arr.dtype.kind not in "fiub":
            raise UserError(f"source array '{key}' is not numeric (dtype {arr.dtype})")
        out[target] = np.array(arr, dtype=NP_DTYPES.get(params[target][0].dtype, np.float32), order="C")  # 0-d stays 0-d
    return {k: out[k] for k in params if k in out}          # the spec's order


def write_checkpoint(path: str, graph: Graph, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """The format of runtime/checkpoint.save: the state_dict arrays plus a JSON string under `__meta__`."""
    from .files import atomic_write
    arrays = dict(state)
    arrays[META] = np.asarray(json.dumps({"spec_hash": graph.spec_hash, "spec_name": graph.name, **meta}))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def positional_hint(unexpected: Sequence[str]) -> str | None:
    """For weights whose keys are mostly positional (`0.weight`, from an nn.Sequential): the converter,
    rather than 'did you mean' guesses between unrelated names."""
    if unexpected and sum(bool(_POSITIONAL.match(k)) for k in unexpected) * 2 > len(unexpected):
        return ("these keys look like an nn.Sequential state_dict (0.weight, 3.weight, ...); map them onto the "
                "spec's names by position with: specc weights convert WEIGHTS --spec SPEC --map-by order -o OUT.npz")
    return None
