"""Shared harness for op tests: shape rule + kernel + ONNX lowering of one op, without a spec.

    infer("linear", {"out_features": 3}, [(2, 4)])                  -> (OpDef, attrs, Inferred)
    gradcheck("linear", {"out_features": 3}, [rand(2, 4)])           # vs central differences, float64
    onnx_parity("linear", {"out_features": 3}, [rand(2, 4)])         # kernel (eval) vs onnxruntime
    run("linear", {...}, inputs, params=None, training=False)        -> tuple of outputs
    torch_parity("linear", {"out_features": 3}, [rand(2, 4)])        # kernel vs the record's PyTorch reference
    draw(case, seed)                                                 -> the inputs of an op record's Case
Inputs are arrays (or None for an omitted optional input); shapes are taken from them.
Parameters are drawn with the op's own initialisers unless given.

Random data is seeded per test: `rand` draws from a stream seeded by a stable hash of the running test's
id (PYTEST_CURRENT_TEST), so adding or reordering tests never changes another test's data.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

import compiler.ops as ops
import runtime.kernels as kernels
from compiler.ir import TensorType
from compiler.init import initialise

_stream: dict[str, object] = {"test": None, "rng": None}

# The ops whose gradcheck / onnx_parity ran to completion in this process (at least one element compared),
# read by tests/test_registry.py::test_every_op_is_gradchecked_and_onnx_checked.
CHECKED: dict[str, set[str]] = {"gradcheck": set(), "onnx_parity": set()}


def stable_seed(text: str) -> int:
    """A seed that depends on `text` only (not on the process, nor on what ran before)."""
    return zlib.crc32(text.encode())


def _rng() -> np.random.Generator:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if _stream["test"] != test:
        _stream["test"], _stream["rng"] = test, np.random.default_rng(stable_seed(test))
    return _stream["rng"]


def rand(*shape, low=-1.0, high=1.0) -> np.ndarray:
    """Uniform floats in [low, high) from the running test's own stream."""
    return _rng().uniform(low, high, shape)


def draw(case, seed: int) -> list:
    """The inputs of an op record's Case (compiler/ops/registry.py's In), float ones in float64."""
    r = np.random.default_rng(seed)
    out = []
    for spec in case.ins():
        if spec is None:
            out.append(None)
        elif spec.value is not None:
            out.append(np.asarray(spec.value, dtype=np.float64 if spec.dtype.startswith("float") else spec.dtype))
        elif spec.dtype == "int64":
            out.append(r.integers(int(spec.low), int(spec.high), spec.shape))
        elif spec.dtype == "bool":
            out.append(r.random(spec.shape) < 0.5)
        else:
            x = r.uniform(spec.low, spec.high, spec.shape)
            if spec.integer:
                x = np.floor(x)
            for k in spec.avoid:                    # off the kinks: finite differences must not straddle one
                near = np.abs(x - k) < 0.05
                x = np.where(near, k + np.where(x >= k, 0.05, -0.05) + (x - k), x)
            out.append(x)
    return out


def _type(a) -> TensorType | None:
    if a is None:
        return None
    a = np.asarray(a)
    dt = {"f": "float32", "i": "int64", "b": "bool"}[a.dtype.kind if a.dtype.kind != "u" else "i"]
    return TensorType(tuple(a.shape), dt)


def infer(name: str, attrs: dict, inputs: list):
    opdef = ops.OPS[name]
    a = opdef.attrs.model_validate(attrs)
    types = [t if isinstance(t, TensorType) or t is None else
             (TensorType(tuple(t)) if isinstance(t, tuple) else _type(t)) for t in inputs]
    return opdef, a, opdef.infer(a, types)


def make_params(name: str, attrs: dict, inputs: list, seed: int = 0, dtype=np.float64) -> list[np.ndarray]:
    _, _, inf = infer(name, attrs, inputs)
    r = np.random.default_rng(seed)
    return [initialise(p.init, p.shape, r, dtype if p.dtype == "float32" else np.dtype(p.dtype)) for p in inf.params]


def run(name: str, attrs: dict, inputs: list, params: list | None = None, training: bool = False,
        seed: int = 0, needs=None, wanted=None):
    opdef, a, inf = infer(name, attrs, inputs)
    if params is None:
        params = make_params(name, attrs, inputs)
    args = list(inputs) + list(params)
    ctx = kernels.Ctx(a, training=training, rng=np.random.default_rng(seed),
                      needs=tuple(needs) if needs is not None else tuple(_float(v) for v in args),
                      wanted=tuple(wanted) if wanted is not None else (True,) * len(opdef.ports))
    out, bwd = kernels.KERNELS[name](ctx, *args)
    outs = out if len(opdef.ports) > 1 else (out,)
    return outs, bwd, inf


def _float(v) -> bool:
    return v is not None and np.asarray(v).dtype.kind == "f"


def gradcheck(name: str, attrs: dict, inputs: list, params: list | None = None, *, training: bool = False,
              eps: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6, max_points: int = 40,
              skip: tuple[int, ...] = ()) -> None:
    """Compare the kernel's backward with central differences of <r, f(args)> in float64.

    Every float argument (inputs, then params) is checked unless its index is in `skip`;
    at most `max_points` random elements of each are perturbed.
    """
    inputs = [None if v is None else (np.asarray(v, np.float64) if _float(v) else np.asarray(v)) for v in inputs]
    if params is None:
        params = make_params(name, attrs, inputs)
    params = [np.asarray(p, np.float64) if _float(p) else p for p in params]
    args = inputs + params
    outs, bwd, _ = run(name, attrs, inputs, params, training=training)
    assert bwd is not None, f"{name}: kernel returned no backward"
    r = np.random.default_rng(7)
    cots = [r.standard_normal(np.shape(o)) if o is not None and np.asarray(o).dtype.kind == "f" else None
            for o in outs]
    for o in outs:
        if o is not None and np.asarray(o).dtype.kind == "f":
            assert np.asarray(o).dtype == np.float64, f"{name}: kernel changed float64 to {np.asarray(o).dtype}"
    grads = bwd(cots[0] if len(outs) == 1 else tuple(cots))
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)

    def objective(vals):
        o2, _, _ = run(name, attrs, vals[:len(inputs)], vals[len(inputs):], training=training)
        return sum(float(np.sum(c * np.asarray(o))) for c, o in zip(cots, o2) if c is not None)

    compared = 0
    for i, v in enumerate(args):
        if not _float(v) or i in skip:
            continue
        g = grads[i] if i < len(grads) else None
        assert g is not None, f"{name}: no gradient for argument {i}"
        g = np.broadcast_to(np.asarray(g), v.shape)
        flat = v.reshape(-1)
        idx = r.choice(flat.size, size=min(max_points, flat.size), replace=False)
        for j in idx:
            vals = [a.copy() if a is not None and _float(a) else a for a in args]
            vals[i].reshape(-1)[j] += eps
            up = objective(vals)
            vals[i].reshape(-1)[j] -= 2 * eps
            down = objective(vals)
            num = (up - down) / (2 * eps)
            ana = g.reshape(-1)[j]
            assert abs(num - ana) <= atol + rtol * max(abs(num), abs(ana)), \
                f"{name}: d/d(arg {i})[{j}] analytic {ana:.8g} vs numeric {num:.8g}"
            compared += 1
    if compared:
        CHECKED["gradcheck"].add(name)


def onnx_parity(name: str, attrs: dict, inputs: list, params: list | None = None, *, opset: int = 18,
                rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Lower one op to ONNX, check the model, run onnxruntime and compare with the kernel (eval, float32)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from compiler.onnx import LOWERINGS, Builder
    from compiler.onnx.registry import DTYPES

    inputs32 = [None if v is None else (np.asarray(v, np.float32) if _float(v) else np.asarray(v)) for v in inputs]
    opdef, a, inf = infer(name, attrs, inputs32)
    if params is None:
        params = make_params(name, attrs, inputs32, dtype=np.float32)
    params = [np.asarray(p, np.float32) if _float(p) else np.asarray(p) for p in params]
    want, _, _ = run(name, attrs, inputs32, params, training=False)

    b = Builder(opset)
    feeds, graph_inputs, x = {}, [], []
    for i, v in enumerate(inputs32):
        if v is None:
            x.append(None)
            continue
        nm = f"in{i}"
        b.reserve(nm)
        feeds[nm] = v
        graph_inputs.append(helper.make_tensor_value_info(nm, DTYPES[str(v.dtype)], list(v.shape)))
        x.append(nm)
    p = [b.add_initializer(f"p{i}.{s.name}", arr) for i, (s, arr) in enumerate(zip(inf.params, params))]

    from compiler.ir import Node
    node = Node(name=name, op=name, attrs=a, inputs=[], outputs=dict(zip(opdef.ports, inf.outputs)),
                params=inf.params)
    b.ins = [_type(v) for v in inputs32]
    b.scope = name
    res = LOWERINGS[name](b, node, x, p)
    res = [res] if isinstance(res, str) else list(res)
    outs, checks = [], []
    for k, (value, t, w) in enumerate(zip(res, inf.outputs, want)):
        if value is None or w is None:
            continue
        o = b.op("Identity", [value], outputs=[f"out{k}"])
        outs.append(helper.make_tensor_value_info(o, DTYPES[t.dtype], list(np.shape(w))))
        checks.append((o, w))
    graph = helper.make_graph(b.nodes, name, graph_inputs, outs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = sess.run([c[0] for c in checks], feeds)
    for (nm, w), g in zip(checks, got):
        np.testing.assert_allclose(g, np.asarray(w), rtol=rtol, atol=atol, err_msg=f"{name} output {nm}")
    if checks:
        CHECKED["onnx_parity"].add(name)


def torch_parity(name: str, attrs: dict, inputs: list, params: list | None = None, *, training: bool = False,
                 rtol: float = 1e-5, atol: float = 1e-7, grads: bool = True, skip: tuple[int, ...] = ()) -> None:
    """The kernel against the op record's PyTorch reference (tools/torch_ref.py's C), in float64: every
    output, then the vector-Jacobian product for a random cotangent of every float argument."""
    import torch

    from compiler.ir import Node
    from tools.torch_ref import C

    inputs = [None if v is None else (np.asarray(v, np.float64) if _float(v) else np.asarray(v)) for v in inputs]
    opdef, a, inf = infer(name, attrs, inputs)
    if params is None:
        params = make_params(name, attrs, inputs)
    params = [np.asarray(p, np.float64) if _float(p) else np.asarray(p) for p in params]
    outs, bwd, _ = run(name, attrs, inputs, params, training=training)
    trainable = [_float(v) for v in inputs] + [_float(v) and not spec.buffer for v, spec in zip(params, inf.params)]
    args = [None if v is None else torch.tensor(v, requires_grad=t) for v, t in zip(inputs + params, trainable)]
    node = Node(name=name, op=name, attrs=a, inputs=[], outputs=dict(zip(opdef.ports, inf.outputs)),
                params=inf.params)
    c = C(a, node, training, {}, (True,) * len(opdef.ports), [_type(v) for v in inputs], torch.float64)
    ref = opdef.reference(c, *args)
    refs = tuple(ref) if len(opdef.ports) > 1 else (ref,)
    for k, (o, t) in enumerate(zip(outs, refs)):
        if o is not None and t is not None:
            np.testing.assert_allclose(np.asarray(o), t.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"{name}: output {opdef.ports[k]} differs from PyTorch")
    if bwd is None or not grads:
        return
    r = np.random.default_rng(11)
    cots = [r.standard_normal(np.shape(o)) if o is not None and np.asarray(o).dtype.kind == "f" else None
            for o in outs]
    got = bwd(cots[0] if len(outs) == 1 else tuple(cots))
    got = got if isinstance(got, (tuple, list)) else (got,)
    pairs = [(t, torch.tensor(cot)) for t, cot in zip(refs, cots) if cot is not None and t is not None
             and t.requires_grad]
    leaves = [(i, v) for i, v in enumerate(args) if v is not None and v.requires_grad and i not in skip]
    if not pairs or not leaves:
        return
    total = sum((t * cot).sum() for t, cot in pairs)
    want = torch.autograd.grad(total, [v for _, v in leaves], allow_unused=True)
    for (i, v), w in zip(leaves, want):
        g = got[i] if i < len(got) else None
        w = np.zeros(tuple(v.shape)) if w is None else w.numpy()
        assert g is not None, f"{name}: the kernel gives no gradient for argument {i}, PyTorch does"
        np.testing.assert_allclose(np.broadcast_to(np.asarray(g), w.shape), w, rtol=rtol, atol=atol,
                                   err_msg=f"{name}: d/d(argument {i}) differs from PyTorch")
