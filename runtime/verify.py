"""An ONNX export checked against the NumPy runtime (`specc compile --verify`): seeded random inputs valid for
the ops that read them, onnxruntime and runtime.Model compared output by output, the first differing node
named; and a checkpoint's weights checked against a spec (`specc compile --weights`, `specc run`).

onnxruntime is imported when a verification runs.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from compiler.errors import UserError
from compiler.ir import Graph, Ref
from compiler.onnx.export import Export, check_weights, export, ref_text

RTOL, ATOL = 1e-4, 1e-5
SIZES = {"N": 2, "B": 2, "T": 7}       # symbol sizes for verification; any other symbol is 3
OTHER_SIZE = 3


# ---------------------------------------------------------------------------------- weights

def load_weights(path: str, graph: Graph, quiet: bool = False) -> dict[str, np.ndarray]:
    """A checkpoint's state_dict checked against the spec (missing, unexpected, mis-shaped keys listed)."""
    from .checkpoint import check_numeric, read_npz, split
    try:
        arrays = read_npz(path, "weights file")
    except UserError:
        raise
    except Exception as e:                                     # noqa: BLE001 - e.g. a plain .npy file
        raise UserError(f"weights file '{path}' is not a valid .npz checkpoint ({type(e).__name__}: {e})") from None
    state, meta, _ = split(arrays)
    check_numeric(state, path, "weights file")
    state = check_weights(graph, state)
    h = meta.get("spec_hash")
    if h and graph.spec_hash and h != graph.spec_hash and not quiet:
        print(f"note: '{path}' was saved from a different version of spec '{meta.get('spec_name', '?')}' "
              "(the names and shapes fit)", file=sys.stderr)
    return state


# ---------------------------------------------------------------------------- random inputs

def symbol_sizes(graph: Graph, sizes: dict[str, int] | None = None) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in graph.inputs.values():
        for d in t.shape:
            if isinstance(d, str):
                out.setdefault(d, (sizes or {}).get(d, SIZES.get(d, OTHER_SIZE)))
    return out


def _consumers(graph: Graph, name: str) -> list[tuple[Any, int]]:
    """(node, input index) of every node that reads graph input `name` directly."""
    if graph.has_node(name):
        return []
    return [(n, i) for n in graph.nodes for i, r in enumerate(n.inputs) if r is not None and r.node == name]


def _int_high(graph: Graph, name: str) -> int:
    """An exclusive upper bound valid for every op that reads int64 input `name` directly."""
    highs: list[int] = []
    for n, i in _consumers(graph, name):
        if n.op == "embedding":
            highs.append(n.attrs.num_embeddings)
        elif n.op == "one_hot":
            highs.append(n.attrs.num_classes)
        elif n.op in ("cross_entropy", "nll_loss") and i == 1 and n.inputs[0] is not None:
            t = graph.type_of(n.inputs[0])
            c = t.shape[1] if t.rank >= 2 else None
            if isinstance(c, int):
                highs.append(c)
        elif n.op in ("gather", "index_select") and i == 1 and n.inputs[0] is not None:
            t = graph.type_of(n.inputs[0])
            size = t.shape[n.attrs.dim % t.rank] if t.rank else None
            if isinstance(size, int):
                highs.append(size)
    return max(1, min(highs)) if highs else 2


GRAPH_OPS = ("gcn_conv", "gat_conv", "graph_aggregate")
PROBABILITY_TARGETS = ("bce_loss", "bce_with_logits", "cross_entropy", "nll_loss")


def _float_kind(graph: Graph, name: str) -> str:
    """How to draw float input `name`: 'adjacency' (0/1 with self loops), 'unit' ([0, 1): targets of
    probability losses, masks) or 'normal'."""
    kinds = set()
    for n, i in _consumers(graph, name):
        if n.op in GRAPH_OPS and i == 1:
            kinds.add("adjacency")
        elif n.op in PROBABILITY_TARGETS and i == 1:
            kinds.add("unit")
    return "adjacency" if "adjacency" in kinds else "unit" if kinds else "normal"


def random_inputs(graph: Graph, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded random values for every graph input, valid for the ops that read them: floats ~ N(0, 1)
    (in [0, 1) for probability-loss targets; 0/1 with self loops for adjacency matrices); int64 in a
    range every consumer accepts (embedding rows, one_hot classes, class labels, gather/index_select
    positions); bool masks (True = ignore) that never mask the first position."""
    from .memory import ensure_fits, nbytes
    rng = np.random.default_rng(seed)
    sym = symbol_sizes(graph, sizes)
    at = f" at {', '.join(f'{k}={v}' for k, v in sym.items())}" if sym else ""
    for name, t in graph.inputs.items():                # every size checked before any is allocated
        shape = tuple(d if isinstance(d, int) else sym[d] for d in t.shape)
        ensure_fits(nbytes(shape, t.dtype), f"input '{name}' [{t}]", at)
    out: dict[str, np.ndarray] = {}
    for name, t in graph.inputs.items():
        shape = tuple(d if isinstance(d, int) else sym[d] for d in t.shape)
        if t.dtype == "int64":
            out[name] = rng.integers(0, _int_high(graph, name), size=shape, dtype=np.int64)
        elif t.dtype == "bool":
            m = rng.random(shape) < 0.25
            if m.ndim:
                m[..., 0] = False
            out[name] = m
        else:
            kind = _float_kind(graph, name)
            if kind == "adjacency" and len(shape) >= 2 and shape[-1] == shape[-2]:
                a = rng.random(shape) < min(0.5, 4.0 / max(shape[-1], 1))
                a = a | np.swapaxes(a, -1, -2) | np.eye(shape[-1], dtype=bool)
                out[name] = a.astype(np.float32)
            elif kind in ("unit", "adjacency"):
                out[name] = rng.random(shape).astype(np.float32)
            else:
                out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------- verify

@dataclass
class Verification:
    ok: bool
    max_diff: float
    compared: list[str]
    message: str
    first_bad: str | None = None                       # spec value ("fc2", "lstm:h") that differs first
    diffs: dict[str, float] = field(default_factory=dict)


def compare(got: Any, want: Any, rtol: float = RTOL, atol: float = ATOL) -> tuple[bool, float, str]:
    """(close, max abs diff, where the worst element is) for onnxruntime's `got` vs NumPy's `want`.

    Elementwise |got - want| <= atol * max(1, max|want|) + rtol * |want|: atol grows with the tensor's
    scale, because float32 rounding from a different summation order does (VGG-16's logits of size ~100
    differ by ~1e-4 between two correct GEMMs). NaNs must match NaNs; integers and booleans must be equal."""
    a, b = np.asarray(got), np.asarray(want)
    if a.shape != b.shape:
        return False, float("inf"), f"shape {list(a.shape)} vs {list(b.shape)}"
    if a.size == 0:
        return True, 0.0, ""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a.dtype.kind in "biu" or b.dtype.kind in "biu":
        d = np.abs(a64 - b64)
        ok = bool((d == 0).all())
    else:
        finite = np.isfinite(b64)
        scale = max(1.0, float(np.max(np.abs(b64[finite])))) if finite.any() else 1.0
        with np.errstate(invalid="ignore"):
            d = np.abs(a64 - b64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        same_inf = np.isinf(a64) & (a64 == b64)
        d = np.where(both_nan | same_inf, 0.0, d)
        d = np.where(np.isnan(d), np.inf, d)
        ok = bool((d <= atol * scale + rtol * np.abs(np.nan_to_num(b64))).all())
    idx = np.unravel_index(int(np.argmax(d)), a.shape)
    where = f"at {tuple(int(i) for i in idx)}: onnxruntime {a64[idx]:.7g}, numpy {b64[idx]:.7g}"
    return ok, float(d.max()), where


def verify(graph: Graph, state: dict[str, np.ndarray], opset: int = 18, outputs: Iterable[str] | None = None,
           exported: Export | None = None, seed: int = 0, optimize: bool = True) -> Verification:
    """Run onnxruntime and the NumPy runtime (eval mode) on the same random input and compare.

    When an output differs, export again with every intermediate value as an output and name the
    first spec node (topological order) whose values differ."""
    from .model import Model
    from .onnx_session import OnnxSession

    exp = exported or export(graph, state, opset, outputs, optimize=optimize)
    feeds = random_inputs(graph, seed)
    model = Model(graph, seed=seed)
    model.load_state_dict(state)
    model.eval()
    want = model(outputs=list(exp.outputs), **feeds)     # first: the memory guard sizes every value before it runs
    sess = OnnxSession(exp.model)
    got = sess.run(**{k: feeds[k] for k in sess.input_names})
    nonfinite = [name for name in exp.outputs
                 for v in (np.asarray(got[name]), np.asarray(want[name]))
                 if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if nonfinite:
        names = ", ".join(f"'{k}'" for k in dict.fromkeys(nonfinite))
        return Verification(False, float("nan"), list(exp.outputs),
                            f"outputs contain NaN/inf: the weights or inputs are not finite (output {names})",
                            first_bad=nonfinite[0])
    worst, bad, diffs = 0.0, [], {}
    for name in exp.outputs:
        ok, d, where = compare(got[name], want[name])
        diffs[name] = d
        worst = max(worst, d)
        if not ok:
            bad.append((name, d, where))
    n = len(exp.outputs)
    if not bad:
        return Verification(True, worst, list(exp.outputs),
                            f"verified: {n} output{'s match' if n != 1 else ' matches'} (max abs diff {worst:.2g})",
                            diffs=diffs)
    lines = [f"onnxruntime and the NumPy runtime differ on output '{bad[0][0]}' (max abs diff {bad[0][1]:.3g}, "
             f"rtol {RTOL:g}, atol {ATOL:g})" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")]
    first = _first_difference(graph, state, opset, exp, feeds, model, optimize)
    first_name = None
    if first is None and optimize:
        lines.append("no intermediate value differs when every one is exposed, which blocks batch-norm fusion: "
                     "suspect the batch-norm fusion (compare with --no-optimize)")
    elif first is None:
        lines.append("no single intermediate value differs beyond the tolerance; the error accumulates")
    if first is not None:
        first_name, node, d, where = first
        lines.append(f"first differing value: '{first_name}' of node '{node.name}' ({node.op}), "
                     f"max abs diff {d:.3g} {where}")
        lines.append(f"its inputs agree, so the ONNX lowering of '{node.op}' is the likely cause")
    return Verification(False, worst, list(exp.outputs), "\n".join(lines), first_name, diffs)


def _first_difference(graph: Graph, state: dict[str, np.ndarray], opset: int, exp: Export,
                      feeds: dict[str, np.ndarray], model: Any, optimize: bool = True
                      ) -> tuple[str, Any, float, str] | None:
    from .onnx_session import OnnxSession
    debug = export(graph, state, opset, list(exp.outputs), expose_all=True, check=False, optimize=optimize)
    sess = OnnxSession(debug.model)
    exposed = set(sess.output_names)
    # spec values in topological order whose ONNX value is a graph output of the debug export
    order: list[tuple[str, str, Any]] = []
    for node in debug.nodes:
        for i, port in enumerate(node.outputs):
            text = node.name if i == 0 else f"{node.name}:{port}"
            onnx_name = debug.values.get(text)
            if onnx_name in exposed and (text not in graph.output_refs or
                                         graph.output_refs[text] == Ref(node.name, None if i == 0 else port)):
                order.append((text, onnx_name, node))
    if not order:
        return None
    got = sess.run(**{k: feeds[k] for k in sess.input_names})
    try:
        want = model(outputs=[t for t, _, _ in order], **feeds)
    except UserError:
        return None
    for text, onnx_name, node in order:
        ok, d, where = compare(got[onnx_name], want[text])
        if not ok:
            return text, node, d, where
    return None


__all__ = ["verify", "compare", "Verification", "random_inputs", "symbol_sizes", "load_weights",
           "ref_text"]
