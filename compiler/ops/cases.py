"""The test cases an op record declares (`cases=[Case(...)]` on its @op): they drive tests/test_op_records.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class In:
    """One input of a test case: its shape and dtype, and where its values are drawn.

    Floats are uniform in [low, high), pushed at least 0.05 away from every value in `avoid` (a kink,
    where finite differences would straddle two slopes); `integer` rounds them down to whole numbers
    (low=0, high=2: a 0/1 adjacency or hard labels); int64 values are uniform integers in [low, high);
    bools are True with probability 1/2. `value` gives the array itself instead.
    """
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0
    avoid: tuple[float, ...] = ()
    integer: bool = False
    value: Any = None


@dataclass(frozen=True)
class Case:
    """One test case of an op: attributes and inputs (a tuple shape, an In, or None for an omitted
    optional input), checked by the generic tests of tests/test_op_records.py: shape rule, finite-difference
    gradients of the kernel (`grad`), onnxruntime against the kernel (`onnx`, inference ops), and the
    PyTorch reference against the kernel, forward and backward (`torch`).

    `training` runs the kernel (and the reference) in training mode; `params` replaces the initialised
    parameters by given values; `fixed` lists the arguments (inputs, then parameters) read as structure,
    whose gradient is not checked (a mask, an adjacency read by `!= 0`); buffers are never checked.
    `rtol`/`atol` loosen the ONNX comparison for numerically delicate cases.
    """
    attrs: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[Any, ...] = ((2, 3),)
    training: bool = False
    params: tuple[Any, ...] | None = None
    grad: bool = True
    onnx: bool = True
    torch: bool = True
    fixed: tuple[int, ...] = ()
    rtol: float = 1e-4
    atol: float = 1e-5

    def ins(self) -> tuple[In | None, ...]:
        return tuple(None if i is None else i if isinstance(i, In) else In(tuple(i)) for i in self.inputs)

    def id(self) -> str:
        attrs = ",".join(f"{k}={v}" for k, v in self.attrs.items())
        shapes = ",".join("-" if i is None else "x".join(map(str, i.shape)) for i in self.ins())
        return f"{attrs}|{shapes}" + ("|train" if self.training else "")
