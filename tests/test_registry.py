"""Every catalogue op has its three parts (shape rule, kernel, ONNX lowering) and its tests."""
import re
from pathlib import Path

import pytest

import compiler.onnx as lowerings
import compiler.ops as ops
import runtime.kernels as kernels
from compiler.catalogue import ALL_OPS, CATALOGUE

TESTS = Path(__file__).parent
OP_TESTS = {p: p.read_text() for p in TESTS.glob("test_ops_*.py")}


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_shape_rule_kernel_and_lowering(name):
    assert name in ops.OPS, f"{name}: no shape rule registered"
    assert name in kernels.KERNELS, f"{name}: no NumPy kernel registered"
    if not ops.OPS[name].loss:
        assert name in lowerings.LOWERINGS, f"{name}: no ONNX lowering registered"


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_gradcheck_and_onnx_parity_tests(name):
    quoted = re.compile(rf"""["']{re.escape(name)}["']""")
    files = [src for src in OP_TESTS.values() if quoted.search(src)]
    assert any("gradcheck" in src for src in files), f"{name}: no gradient check in tests/test_ops_*.py"
    if not ops.OPS[name].loss:
        assert any("onnx_parity" in src for src in files), f"{name}: no ONNX parity test"


def test_no_ops_outside_the_catalogue_without_a_family():
    for name, opdef in ops.OPS.items():
        assert name in ALL_OPS, f"{name} is registered but not in compiler/catalogue.py"
        assert name in CATALOGUE[opdef.family], f"{name}: family {opdef.family!r} does not match the catalogue"


def test_every_op_documents_itself():
    for name, opdef in ops.OPS.items():
        assert opdef.doc, f"{name}: its shape rule needs a one-line docstring (docs/ops.md is generated from it)"
