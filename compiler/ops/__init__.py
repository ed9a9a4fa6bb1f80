"""The operator catalogue. Importing this package registers every op in OPS."""
from .registry import OPS, Attrs, Case, In, Inferred, NoAttrs, OpDef, lowering, op, reference  # noqa: I001

from ..catalogue import import_families  # noqa: E402  (after OPS: the families register into it)

import_families(__name__)

__all__ = ["OPS", "Attrs", "Case", "In", "Inferred", "NoAttrs", "OpDef", "lowering", "op", "reference"]
