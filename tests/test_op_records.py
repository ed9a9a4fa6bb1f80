"""Generic tests of every op record (compiler/ops/<family>.py), driven by the cases the record declares.

For each Case of each op: the shape rule agrees with the kernel's output shapes and dtypes; the kernel's
backward agrees with central finite differences (float64); for inference ops, onnxruntime running the
record's lowering agrees with the kernel; the record's PyTorch reference agrees with the kernel, forward and
backward (needs torch). test_every_op_is_complete runs without torch and cannot be skipped: it fails when
an op lacks any of its parts, or a case for a check. Each case draws its inputs from a seed made of its own
id, so no test's data depends on another's.
"""
from __future__ import annotations

import numpy as np
import pytest

import compiler.ops as ops
import runtime.kernels as kernels
from compiler.catalogue import ALL_OPS, CATALOGUE, FAMILIES
from opcheck import draw, gradcheck, infer, make_params, onnx_parity, run, stable_seed, torch_parity

CASES = [(name, case) for name, d in ops.OPS.items() for case in d.cases]
IDS = [f"{name}[{case.id()}]" for name, case in CASES]


def _inputs(name, case) -> list:
    return draw(case, stable_seed(f"{name}[{case.id()}]"))


def _params(case) -> list | None:
    return None if case.params is None else [np.asarray(p, np.float64) for p in case.params]


def _structure(name, case) -> tuple[int, ...]:
    """Arguments whose gradient is not checked: the case's `fixed` ones, and the op's buffers."""
    xs = _inputs(name, case)
    _, _, inf = infer(name, case.attrs, xs)
    return tuple(case.fixed) + tuple(len(xs) + i for i, p in enumerate(inf.params) if p.buffer)


def _grad_cases(d):
    return [c for c in d.cases if c.grad and not d.no_grad]


def _onnx_cases(d):
    return [c for c in d.cases if c.onnx and not c.training and not d.loss]


@pytest.mark.parametrize("name,case", CASES, ids=IDS)
def test_shape_rule_matches_the_kernel(name, case):
    """The rule's output types are what the kernel returns (float32 inputs, as `specc run` feeds it)."""
    xs = [None if v is None else (v.astype(np.float32) if v.dtype.kind == "f" else v) for v in _inputs(name, case)]
    params = _params(case)
    _, _, inf = infer(name, case.attrs, xs)
    params = make_params(name, case.attrs, xs, dtype=np.float32) if params is None else \
        [p.astype(np.float32) for p in params]
    outs, _, _ = run(name, case.attrs, xs, params, training=case.training)
    assert len(outs) == len(inf.outputs), f"{name}: {len(outs)} outputs, the rule declares {len(inf.outputs)}"
    for o, t in zip(outs, inf.outputs):
        o = np.asarray(o)
        assert o.shape == tuple(t.shape), f"{name}: kernel gives shape {o.shape}, the rule says {t}"
        assert str(o.dtype) == t.dtype, f"{name}: kernel gives dtype {o.dtype}, the rule says {t.dtype}"
    assert inf.macs >= 0


@pytest.mark.parametrize("name,case", [(n, c) for n, c in CASES if c in _grad_cases(ops.OPS[n])],
                         ids=[i for i, (n, c) in zip(IDS, CASES) if c in _grad_cases(ops.OPS[n])])
def test_gradient_matches_finite_differences(name, case):
    gradcheck(name, case.attrs, _inputs(name, case), _params(case), training=case.training,
              skip=_structure(name, case))


@pytest.mark.parametrize("name,case", [(n, c) for n, c in CASES if c in _onnx_cases(ops.OPS[n])],
                         ids=[i for i, (n, c) in zip(IDS, CASES) if c in _onnx_cases(ops.OPS[n])])
def test_onnx_matches_the_kernel(name, case):
    onnx_parity(name, case.attrs, _inputs(name, case), _params(case), rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("name,case", [(n, c) for n, c in CASES if c.torch],
                         ids=[i for i, (n, c) in zip(IDS, CASES) if c.torch])
def test_torch_reference_matches_the_kernel(name, case):
    pytest.importorskip("torch")
    torch_parity(name, case.attrs, _inputs(name, case), _params(case), training=case.training,
                 grads=not ops.OPS[name].no_grad, skip=_structure(name, case))


def test_every_op_is_complete():
    """Every op record has a shape test case, a NumPy kernel, a gradient check (or says why none applies), an
    ONNX lowering with an ONNX parity case (inference ops), a PyTorch reference with a parity case, and an
    export-torch form. Runs without torch: nothing here imports it."""
    from runtime.torch_backend.layers import emitter

    problems = []
    for name, d in ops.OPS.items():
        lacks = []
        if not d.cases:
            lacks.append("a test case (cases=[Case(...)] on its @op)")
        if name not in kernels.KERNELS:
            lacks.append("a NumPy kernel (@kernel in runtime/kernels/%s.py)" % d.family)
        if not d.no_grad and not any(_has_float_argument(name, c) for c in _grad_cases(d)):
            lacks.append("a gradient-checked case (a case with a float input or parameter, or no_grad='why')")
        if not d.loss and d.lowering is None:
            lacks.append("an ONNX lowering (onnx='OpType' or @lowering)")
        if not d.loss and not _onnx_cases(d):
            lacks.append("an ONNX parity case (an inference-mode case with onnx=True)")
        if d.reference is None:
            lacks.append("a PyTorch reference (torch='F.fn' or @reference)")
        if not any(c.torch for c in d.cases):
            lacks.append("a PyTorch parity case (a case with torch=True)")
        if emitter(name) is None:
            lacks.append("an export-torch form (torch='F.fn' on a parameter-free op, or an emitter in "
                         "runtime/torch_backend/layers.py)")
        if not d.doc:
            lacks.append("a docstring on its shape rule (docs/ops.md is generated from it)")
        problems += [f"{name} lacks {what}" for what in lacks]
    assert not problems, "incomplete op records:\n  " + "\n  ".join(problems)


def _has_float_argument(name, case) -> bool:
    xs = _inputs(name, case)
    _, _, inf = infer(name, case.attrs, xs)
    return any(v is not None and v.dtype.kind == "f" for v in xs) or any(p.dtype == "float32" for p in inf.params)


def test_the_catalogue_is_the_registry():
    assert tuple(CATALOGUE) == FAMILIES
    assert set(ALL_OPS) == set(ops.OPS) and len(ALL_OPS) == len(ops.OPS)
    for family, names in CATALOGUE.items():
        assert all(ops.OPS[n].family == family for n in names)
        assert names, f"family {family} has no ops"


def test_kernels_register_only_declared_ops():
    assert set(kernels.KERNELS) == set(ops.OPS), set(kernels.KERNELS) ^ set(ops.OPS)


def test_no_gradient_reasons_are_not_stale():
    """An op that says no gradient check applies must not have a kernel backward that differs from zero
    or None on its cases (else it should be gradchecked)."""
    for name, d in ops.OPS.items():
        if not d.no_grad:
            continue
        for case in d.cases:
            outs, bwd, _ = run(name, case.attrs, _inputs(name, case), _params(case))
            if bwd is None:
                continue
            cots = [np.ones_like(np.asarray(o, dtype=np.float64)) for o in outs]
            grads = bwd(cots[0] if len(cots) == 1 else tuple(cots))
            grads = grads if isinstance(grads, (tuple, list)) else (grads,)
            assert all(g is None or not np.any(g) for g in grads), f"{name}: non-zero gradient but no_grad"


def test_case_seeds_are_stable():
    """A case's data is a function of its id alone: drawing twice gives the same arrays."""
    name, case = CASES[0]
    a, b = _inputs(name, case), _inputs(name, case)
    assert all(np.array_equal(x, y) for x, y in zip(a, b) if x is not None)


def test_docs_ops_md_is_up_to_date():
    """docs/ops.md is generated from the records: regenerate it with `python tools/gen_op_docs.py`."""
    from pathlib import Path

    from tools.gen_op_docs import render

    path = Path(__file__).resolve().parent.parent / "docs" / "ops.md"
    assert path.read_text(encoding="utf-8") == render(), \
        "docs/ops.md is stale: run `python tools/gen_op_docs.py` and commit the result"


def _declared_export_ops() -> list[str]:
    from runtime.torch_backend.layers import declared, emitter
    return [n for n in ops.OPS if emitter(n) is declared]


@pytest.mark.parametrize("name", _declared_export_ops())
def test_export_torch_default_form_matches_the_kernel(name, tmp_path):
    """An op whose export-torch form is the record's default (`torch=`, `torch_module=`): a spec repeating it
    twice (an nn.Sequential of its module form, when it has one) and once more on the input (its functional
    form), exported, imported and run by PyTorch, gives the NumPy runtime's outputs."""
    torch = pytest.importorskip("torch")
    import importlib.util
    import json

    import compiler
    import runtime
    from runtime.torch_backend.codegen import generate

    case = ops.OPS[name].cases[0]
    shapes = [["N", *i.shape[1:]] for i in case.ins()]
    inputs = {f"in{k}": s for k, s in enumerate(shapes)}
    layers = [{"op": name, "name": "chain", "repeat": 2, **case.attrs},
              {"op": name, "name": "single", "in": list(inputs), **case.attrs}]
    spec = json.dumps({"specc": 1, "name": f"op_{name}", "inputs": inputs, "layers": layers,
                       "outputs": ["chain", "single"]})
    g = compiler.compile_text(spec)
    exp = generate(g, f"op_{name}.yaml")
    path = tmp_path / f"op_{name}_model.py"
    path.write_text(exp.source)
    if ops.OPS[name].torch_module:
        assert f"nn.Sequential({ops.OPS[name].torch_module}(" in exp.source.replace("\n", "").replace(" ", "")
    module_spec = importlib.util.spec_from_file_location(f"op_{name}_model", path)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    net = getattr(mod, exp.class_name)()
    net.eval()
    model = runtime.Model(g, seed=0)
    model.eval()
    xs = {k: v.astype(np.float32) for k, v in zip(inputs, draw(case, stable_seed(name)))}
    ours = model(**xs)
    with torch.no_grad():
        res = net(*[torch.from_numpy(xs[k]) for k in exp.inputs])
    for out, t in zip(exp.outputs, res):
        np.testing.assert_allclose(t.numpy(), ours[out], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {out}")
