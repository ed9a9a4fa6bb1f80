"""OnnxSession: onnxruntime with the NumPy runtime's call shape.

    sess = OnnxSession("net.onnx")            # or an onnx.ModelProto, or serialized bytes
    sess.run(image=x)                          # -> {output name: ndarray}

Inputs are cast to the model's declared dtypes (integral floats to int64, as runtime.Model does) and
checked against the declared shapes (symbolic dimensions bound consistently), so a mistake is a
UserError naming the input rather than an onnxruntime stack trace.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UserError, did_you_mean

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(float16)": np.float16,
              "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


class OnnxSession:
    """An onnxruntime CPU session. `threads`: intra-op threads (default: onnxruntime's choice)."""

    def __init__(self, model: Any, threads: int | None = None):
        import onnxruntime as ort
        try:
            import onnx
        except ImportError:                          # pragma: no cover - onnx is a dependency
            onnx = None
        ort.set_default_logger_severity(4)          # no raw (ANSI-coloured) ORT log lines before our errors
        self.path: str | None = None
        proto: Any = None
        if onnx is not None and isinstance(model, onnx.ModelProto):
            proto = model
            source: Any = model.SerializeToString()
            what = f"ONNX model '{model.graph.name}'"
        elif isinstance(model, (bytes, bytearray)):
            source, what = bytes(model), "ONNX model"
        elif isinstance(model, (str, Path)):
            p = Path(model)
            if not p.is_file():
                raise UserError(f"ONNX model '{model}' not found")
            if p.is_dir():
                raise UserError(f"ONNX model '{model}' is a folder, not an .onnx file")
            source, what, self.path = str(p), f"'{model}'", str(p)
        else:
            raise UserError(f"OnnxSession needs an onnx.ModelProto, bytes or a path, got {type(model).__name__}")
        so = ort.SessionOptions()
        so.log_severity_level = 4
        if threads:
            so.intra_op_num_threads = int(threads)
        try:
            self._sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        except Exception as e:                               # noqa: BLE001 - onnxruntime raises many kinds
            raise UserError(f"{what} is not a valid ONNX model onnxruntime can load: {_first_line(e)}",
                            hint="re-export it with `specc compile`") from None
        self._inputs = {i.name: i for i in self._sess.get_inputs()}
        self._rows = _index_bounds(proto if proto is not None else source, set(self._inputs))
        self._outputs = [o.name for o in self._sess.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def inputs(self) -> dict[str, tuple[list[Any], str]]:
        """{name: (shape with symbols as strings, numpy dtype name)}."""
        return {k: (list(i.shape), np.dtype(ORT_DTYPES.get(i.type, np.float32)).name) for k, i in self._inputs.items()}

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._sess.get_modelmeta().custom_metadata_map)

    def run(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, np.ndarray]:
        unknown = [k for k in inputs if k not in self._inputs]
        if unknown:
            raise UserError(f"unknown input '{unknown[0]}'",
                            hint=did_you_mean(unknown[0], list(self._inputs))
                            or f"the model's inputs are: {', '.join(self._inputs)}")
        missing = [k for k in self._inputs if k not in inputs]
        if missing:
            i = self._inputs[missing[0]]
            raise UserError(f"missing input '{missing[0]}' (shape {_fmt(i.shape)}, "
                            f"{np.dtype(ORT_DTYPES.get(i.type, np.float32)).name})")
        if outputs is not None:
            bad = [o for o in outputs if o not in self._outputs]
            if bad:
                raise UserError(f"unknown output '{bad[0]}'", hint=did_you_mean(bad[0], self._outputs)
                                or f"the model's outputs are: {', '.join(self._outputs)}")
        feeds: dict[str, np.ndarray] = {}
        symbols: dict[str, int] = {}
        for name, info in self._inputs.items():
            feeds[name] = arr = _cast(name, inputs[name], ORT_DTYPES.get(info.type, np.float32))
            shape = list(info.shape)
            if arr.ndim != len(shape):
                raise UserError(f"input '{name}' must have shape {_fmt(shape)} (rank {len(shape)}), "
                                f"got {list(arr.shape)}")
            for d, s in zip(shape, arr.shape):
                if isinstance(d, int) and d != s:
                    raise UserError(f"input '{name}' must have shape {_fmt(shape)}, got {list(arr.shape)}")
                if isinstance(d, str) and d:
                    if symbols.setdefault(d, s) != s:
                        raise UserError(f"symbol {d} is {symbols[d]} in one input but {s} in '{name}' "
                                        f"(shape {list(arr.shape)})")
        for name, (rows, node) in self._rows.items():
            arr = feeds[name]
            if arr.dtype.kind in "iu" and arr.size:
                lo, hi = int(arr.min()), int(arr.max())
                if lo < 0 or hi >= rows:
                    bad = lo if lo < 0 else hi
                    raise UserError(f"input '{name}' holds {bad}, outside 0..{rows - 1}: it indexes the "
                                    f"{rows} rows of '{node}' (an embedding table)",
                                    hint="indices must be 0..num_embeddings-1")
        names = list(outputs) if outputs is not None else self._outputs
        try:
            values = self._sess.run(names, feeds)
        except Exception as e:                               # noqa: BLE001
            raise UserError(f"onnxruntime failed: {_first_line(e)}") from None
        return dict(zip(names, values))

    __call__ = run


def _index_bounds(source: Any, inputs: set[str]) -> dict[str, tuple[int, str]]:
    """{graph input: (rows, table)} for inputs that index a constant table directly (Gather axis 0 of an
    initializer: an embedding), whose negative indices onnxruntime would silently accept."""
    try:
        import onnx
        if isinstance(source, (bytes, str)):
            source = onnx.load_model_from_string(source) if isinstance(source, bytes) else \
                onnx.load(source, load_external_data=False)
        g = source.graph
    except Exception:                                       # noqa: BLE001 - checking is best effort
        return {}
    tables = {t.name: list(t.dims) for t in g.initializer}
    out: dict[str, tuple[int, str]] = {}
    for n in g.node:
        if n.op_type != "Gather" or len(n.input) < 2 or n.input[1] not in inputs or n.input[0] not in tables:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        dims = tables[n.input[0]]
        if axis != 0 or not dims:
            continue
        rows = int(dims[0])
        prev = out.get(n.input[1])
        if prev is None or rows < prev[0]:
            out[n.input[1]] = (rows, n.input[0])
    return out


def _fmt(shape: list[Any]) -> str:
    return "×".join(str(d) if d not in (None, "") else "?" for d in shape) if shape else "scalar"


def _cast(name: str, value: Any, want: Any) -> np.ndarray:
    arr = np.asarray(value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value)
    want = np.dtype(want)
    if arr.dtype == want:
        return arr
    if arr.dtype.kind not in "fiub":
        raise UserError(f"input '{name}' must be numeric, got dtype {arr.dtype}")
    if want.kind in "iu" and arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise UserError(f"input '{name}' must hold integers ({want.name}), got dtype {arr.dtype}")
    if want.kind == "b" and arr.dtype.kind != "b":
        if not np.isin(arr, (0, 1)).all():
            raise UserError(f"input '{name}' must be boolean (0/1), got dtype {arr.dtype}")
    return arr.astype(want)
