"""Every catalogue op has its three parts (shape rule, kernel, ONNX lowering) and its tests."""
import pytest

import compiler.onnx as lowerings
import compiler.ops as ops
import runtime.kernels as kernels
from compiler.catalogue import ALL_OPS, CATALOGUE


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_shape_rule_kernel_and_lowering(name):
    assert name in ops.OPS, f"{name}: no shape rule registered"
    assert name in kernels.KERNELS, f"{name}: no NumPy kernel registered"
    if not ops.OPS[name].loss:
        assert name in lowerings.LOWERINGS, f"{name}: no ONNX lowering registered"


# Ops that no gradcheck can cover: their records say why (OpDef.no_grad); their own tests check what they do.
NO_GRADCHECK = {name: d.no_grad for name, d in ops.OPS.items() if d.no_grad}


def test_every_op_is_gradchecked_and_onnx_checked(op_test_run):
    """Every catalogue op went through opcheck.gradcheck (except NO_GRADCHECK) and, unless it is a loss
    (losses have no ONNX lowering), opcheck.onnx_parity, in this very session.

    How: tests/opcheck.py adds an op's name to opcheck.CHECKED["gradcheck"] / ["onnx_parity"] each time one
    of those checks runs to the end having compared at least one value, so a name in there means a check
    really ran and passed — not that the name is mentioned somewhere in a test file. tests/conftest.py moves
    this test behind every other test of the session and records the outcome of every test of
    tests/test_ops_*.py. The sets are only complete when all of those tests ran, so the assertion is made
    only when every test_ops_*.py file was collected in full (no -k, -m, --deselect or file::test selection)
    and each of its tests ran and passed in this process; otherwise (a subset selected, a failure already
    reported, pytest-xdist workers, torch or onnxruntime missing so tests were skipped) the test is skipped
    and says why. The whole suite, or `pytest tests/test_ops_*.py tests/test_registry.py`, asserts it.
    """
    import opcheck

    assert set(NO_GRADCHECK) <= set(ALL_OPS), "NO_GRADCHECK names an op outside the catalogue"
    why_not = op_test_run
    if why_not:
        pytest.skip(f"coverage not checked: {why_not}")
    done = opcheck.CHECKED
    no_grad = [n for n in ALL_OPS if n not in NO_GRADCHECK and n not in done["gradcheck"]]
    no_onnx = [n for n in ALL_OPS if not ops.OPS[n].loss and n not in done["onnx_parity"]]
    stale = [n for n in NO_GRADCHECK if n in done["gradcheck"]]
    assert not no_grad, f"ops never gradchecked by tests/test_ops_*.py: {', '.join(no_grad)}"
    assert not no_onnx, f"ops never checked against onnxruntime by tests/test_ops_*.py: {', '.join(no_onnx)}"
    assert not stale, f"ops in NO_GRADCHECK that are gradchecked after all (drop them from it): {stale}"


def test_opcheck_records_only_checks_that_ran():
    """The bookkeeping the coverage test relies on: a gradcheck or onnx_parity that compared values
    records the op; one that compared nothing (every argument skipped) or failed does not."""
    import numpy as np

    import opcheck

    saved = {k: set(v) for k, v in opcheck.CHECKED.items()}
    try:
        for v in opcheck.CHECKED.values():
            v.clear()
        x = np.linspace(-1, 1, 6).reshape(2, 3)
        opcheck.gradcheck("tanh", {}, [x], skip=(0,))               # nothing compared
        assert opcheck.CHECKED["gradcheck"] == set()
        opcheck.gradcheck("tanh", {}, [x])
        assert opcheck.CHECKED["gradcheck"] == {"tanh"}
        opcheck.CHECKED["gradcheck"].clear()
        with pytest.raises(AssertionError):         # differences over a step of 1 miss tanh's slope: fails
            opcheck.gradcheck("tanh", {}, [x], eps=1.0, atol=0, rtol=0)
        assert opcheck.CHECKED["gradcheck"] == set()
        opcheck.onnx_parity("tanh", {}, [x])
        assert opcheck.CHECKED["onnx_parity"] == {"tanh"}
    finally:
        for k, v in saved.items():
            opcheck.CHECKED[k].clear()
            opcheck.CHECKED[k].update(v)


def test_no_ops_outside_the_catalogue_without_a_family():
    for name, opdef in ops.OPS.items():
        assert name in ALL_OPS, f"{name} is registered but not in compiler/catalogue.py"
        assert name in CATALOGUE[opdef.family], f"{name}: family {opdef.family!r} does not match the catalogue"


def test_every_op_documents_itself():
    for name, opdef in ops.OPS.items():
        assert opdef.doc, f"{name}: its shape rule needs a one-line docstring (docs/ops.md is generated from it)"
