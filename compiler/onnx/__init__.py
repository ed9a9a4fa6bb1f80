"""ONNX export. Imported only by compiler.to_onnx, so `specc check` never loads onnx."""
from importlib import import_module

from .registry import LOWERINGS, Builder, lowering

FAMILIES = ("tensor", "dense", "activation", "convolution", "normalisation", "sequence",
            "attention", "graph", "generative", "similarity", "loss")

for _family in FAMILIES:
    try:
        import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as e:          # a family still being written
        if e.name != f"{__name__}.{_family}":
            raise

__all__ = ["LOWERINGS", "Builder", "lowering"]
