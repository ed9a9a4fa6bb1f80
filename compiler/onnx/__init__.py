"""ONNX export. Imported only by compiler.to_onnx, so `specc check` never loads onnx."""
from .registry import LOWERINGS, Builder, lowering

__all__ = ["LOWERINGS", "Builder", "lowering"]
