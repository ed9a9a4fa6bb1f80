"""The operator catalogue: one record per op (compiler/ops/<family>.py). Importing this package registers
every op in OPS."""
from .cases import Case, In
from .registry import OPS, Attrs, Inferred, NoAttrs, OpDef, lowering, op, reference

from ..catalogue import import_families  # noqa: E402,I001  (after OPS: the families register into it)

import_families(__name__)

__all__ = ["OPS", "Attrs", "Case", "In", "Inferred", "NoAttrs", "OpDef", "lowering", "op", "reference"]
