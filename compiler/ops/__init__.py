"""The operator catalogue. Importing this package registers every op in OPS."""
from ..catalogue import import_families

from .registry import OPS, Attrs, Inferred, NoAttrs, OpDef, op

import_families(__name__)

__all__ = ["OPS", "Attrs", "Inferred", "NoAttrs", "OpDef", "op"]
