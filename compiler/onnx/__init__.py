"""ONNX export. Imported only by compiler.to_onnx, so `specc check` never loads onnx."""
from ..catalogue import import_families

from .registry import LOWERINGS, Builder, lowering

import_families(__name__, exclude=("loss",))       # losses are pruned from exports

__all__ = ["LOWERINGS", "Builder", "lowering"]
