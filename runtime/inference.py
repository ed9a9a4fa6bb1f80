"""Inference for `specc run` (cli/run.py) and the Python API: the NumPy runtime, onnxruntime or torch.

    specc run SPEC --weights CKPT.npz --input image=x.npy [-o out.npz] [--backend numpy|onnxruntime]
    specc run MODEL.onnx --input image=x.npy [-o out.npz]
    specc run SPEC --weights CKPT.npz --data SOURCE [-o out.npz]

A spec runs on the NumPy runtime by default (`--backend onnxruntime` exports it in memory first);
an .onnx file runs on onnxruntime. `--input` also takes a bare FILE.npz whose arrays are named
after the inputs. `--data` runs the spec over a whole data source (docs/data.md), read as in training
(the checkpoint's categories, classes and vocabulary). Without `-o` each output's name, shape, dtype and
first values are printed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError


def _load_array(path: str, name: str) -> np.ndarray:
    p = Path(path)
    if p.is_dir():
        raise UserError(f"input file '{path}' (for '{name}') is a folder, not an .npy file")
    if not p.is_file():
        raise UserError(f"input file '{path}' (for '{name}') not found")
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise UserError(f"cannot read input file '{path}': {e.strerror or e}") from None
    if not head.startswith((b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")):
        if head[:1] == b"\x80":
            raise UserError(f"input file '{path}' holds pickled Python objects, which specc refuses to load",
                            hint="save plain numeric arrays with numpy.save")
        raise UserError(f"input file '{path}' is not a valid .npy/.npz file",
                        hint="save the array with numpy.save(path, array)")
    from .checkpoint import check_array_sizes
    check_array_sizes(p, "input file")
    try:
        data = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise UserError(f"input file '{path}' holds pickled Python objects, which specc refuses to load",
                            hint="save plain numeric arrays with numpy.save") from None
        raise UserError(f"input file '{path}' is not a valid .npy/.npz file: {e}") from None
    except Exception as e:                                      # noqa: BLE001 - corrupt or foreign files
        raise UserError(f"input file '{path}' is not a valid .npy/.npz file ({type(e).__name__}: {e})") from None
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            with data as z:
                keys = list(z.files)
                key = name if name in keys else keys[0] if len(keys) == 1 else None
                if key is None:
                    raise UserError(f"input file '{path}' holds {len(keys)} arrays ({', '.join(keys[:8])}) and "
                                    f"none is named '{name}'")
                arr = z[key]
        except UserError:
            raise
        except Exception as e:                                  # noqa: BLE001
            raise UserError(f"input file '{path}' could not be read ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "fiub":
        raise UserError(f"input file '{path}' holds a {arr.dtype} array; '{name}' needs numbers")
    return arr


def parse_inputs(items: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """{name: array} from NAME=FILE.npy items (or FILE.npz with arrays named after inputs), and the files."""
    inputs: dict[str, np.ndarray] = {}
    files: list[str] = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            if item.endswith(".npz"):
                from .checkpoint import read_npz
                files.append(item)
                for k, v in read_npz(item, "input file").items():
                    if k in inputs:
                        raise UserError(f"input '{k}' is given twice", code=2)
                    inputs[k] = v
                continue
            raise UserError(f"--input expects NAME=FILE.npy, got '{item}'", code=2)
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise UserError(f"--input expects NAME=FILE.npy, got '{item}'", code=2)
        if name in inputs:
            raise UserError(f"input '{name}' is given twice", code=2)
        files.append(path)
        inputs[name] = _load_array(path, name)
    return inputs, files


def preview(name: str, a: np.ndarray, n: int = 6) -> str:
    a = np.asarray(a)
    flat = a.reshape(-1)
    with np.printoptions(precision=4, suppress=True, threshold=n + 1, linewidth=200):
        vals = np.array2string(flat[:n], separator=", ")
    more = f" … ({flat.size} values)" if flat.size > n else ""
    shape = "×".join(map(str, a.shape)) if a.ndim else "scalar"
    return f"{name}: shape {shape} {a.dtype}  {vals}{more}"


def _check_spec_file(path: str) -> None:
    """A spec must be YAML text: refuse arrays, checkpoints and other binary files by name."""
    suffix = Path(path).suffix.lower()
    hint = "give a spec .yaml (with --weights CKPT.npz) or an exported .onnx file"
    if suffix in (".npy", ".npz"):
        raise UserError(f"'{path}' is a {suffix} array file, but specc run expects a spec .yaml or a .onnx file",
                        hint=hint + "; arrays go to --input NAME=FILE.npy, weights to --weights")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror or e}") from None
    try:
        head.decode("utf-8")
        binary = b"\x00" in head
    except UnicodeDecodeError as e:
        binary = e.start < len(head) - 4            # a multi-byte character cut at the end is fine
    if binary:
        raise UserError(f"'{path}' is not a text file, but specc run expects a spec .yaml or a .onnx file",
                        hint=hint)


def _symbols(graph: Any, inputs: dict[str, Any]) -> dict[str, int]:
    """The sizes the given arrays give to the spec's symbolic dimensions (first binding wins)."""
    out: dict[str, int] = {}
    for name, t in graph.inputs.items():
        shape = np.shape(inputs.get(name)) if name in inputs else ()
        if len(shape) == t.rank:
            for d, n in zip(t.shape, shape):
                if isinstance(d, str):
                    out.setdefault(d, int(n))
    return out


def run_model(path: str, inputs: dict[str, Any], backend: str | None = None, weights: str | None = None,
              sets: list[str] | None = None, device: str = "cpu") -> dict[str, np.ndarray]:
    """What `specc run` computes, as a function: {output name: ndarray}."""
    is_onnx = str(path).lower().endswith(".onnx")
    if not Path(path).is_file():
        raise UserError(f"no such {'model' if is_onnx else 'spec'} file: '{path}'", code=1)
    if not is_onnx:
        _check_spec_file(path)
    backend = backend or ("onnxruntime" if is_onnx else "numpy")
    if is_onnx:
        if backend in ("numpy", "torch"):
            raise UserError(f"the {backend} backend runs a spec, not an .onnx file ('{path}')",
                            hint="give the spec and --weights CKPT.npz, or use --backend onnxruntime", code=2)
        if weights:
            raise UserError("--weights applies to a spec; an .onnx file carries its own weights", code=2)
        if sets:
            raise UserError("--set applies to a spec, not to an .onnx file", code=2)
        from .onnx_session import OnnxSession
        return OnnxSession(path).run(**inputs)

    from compiler.overrides import load_graph
    graph = load_graph(path, sets)
    if not weights:
        raise UserError(f"running spec '{path}' needs trained weights: --weights CKPT.npz",
                        hint="train with `specc train`, or run an exported .onnx file", code=2)
    if backend == "onnxruntime":
        from .verify import load_weights
        from compiler.onnx.export import export
        from .onnx_session import OnnxSession
        from .checkpoint import warn_nonfinite
        from .memory import guard_activations
        state = load_weights(weights, graph)
        warn_nonfinite(state, weights)
        guard_activations(graph.name, list(graph.nodes), _symbols(graph, inputs),
                          grad=False)                   # onnxruntime computes the same values: sized first
        sess = OnnxSession(export(graph, state).model)
        # as the NumPy runtime does, accept spec inputs that only pruned nodes read (labels)
        try:
            return sess.run(**{k: v for k, v in inputs.items() if k in sess.input_names or k not in graph.inputs})
        except UserError:
            _numpy_diagnosis(graph, state, inputs, sess.output_names)
            raise
    if backend == "torch":
        from .torch_backend import run_torch
        return run_torch(graph, weights, inputs, device)
    from .checkpoint import load, warn_nonfinite
    from .model import Model
    model = Model(graph, seed=0)
    load(model, weights)
    warn_nonfinite(model.state_dict(), weights)
    model.eval()
    return model(**inputs)


def _numpy_diagnosis(graph: Any, state: dict[str, np.ndarray], inputs: dict[str, Any], outputs: list[str]) -> None:
    """onnxruntime failed on these inputs: the NumPy runtime names the spec node and the sizes at fault (data
    that breaks a shape rule, say) where onnxruntime names its own node; returns quietly when it runs."""
    from .model import Model
    model = Model(graph, seed=0)
    model.load_state_dict(state)
    model.eval()
    model(outputs=list(outputs), **{k: v for k, v in inputs.items() if k in graph.inputs})


def run_on_data(path: str, data: str, weights: str | None, sets: list[str] | None = None,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """`specc run SPEC --data SOURCE`: the outputs over a whole data source, batch by batch, read with what
    training derived (categories, classes, vocabulary: the checkpoint's metadata)."""
    if str(path).lower().endswith(".onnx"):
        raise UserError("--data needs the spec (it says how to read the data); give SPEC --weights CKPT", code=2)
    if not weights:
        raise UserError(f"running spec '{path}' needs trained weights: --weights CKPT.npz", code=2)
    from compiler.overrides import load_graph
    from . import data as D
    from .checkpoint import load, read_meta, warn_nonfinite
    from .model import Model
    graph = load_graph(path, sets)
    if not Path(weights).is_file():
        raise UserError(f"checkpoint '{weights}' not found")
    needed = D.needed_inputs(graph, [str(r) for r in graph.output_refs.values()])
    like = graph.train.data.train if graph.train is not None else None
    ds = D.load(graph, data, needed, role="run", derived=(read_meta(weights) or {}).get("data"), like=like,
                like_base=Path(path).parent)
    model = Model(graph, seed=0)
    load(model, weights)
    warn_nonfinite(model.state_dict(), weights)
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in D.prefetch(ds.batches(batch_size)):
        for k, v in model(**{k: batch[k] for k in needed}).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) if len(v) > 1 and all(x.ndim for x in v) else v[0] for k, v in parts.items()}
