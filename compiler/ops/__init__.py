"""The operator catalogue. Importing this package registers every op in OPS."""
from importlib import import_module

from .registry import OPS, Attrs, Inferred, NoAttrs, OpDef, op

FAMILIES = ("tensor", "dense", "activation", "convolution", "normalisation", "sequence",
            "attention", "graph", "generative", "similarity", "loss")

for _family in FAMILIES:
    try:
        import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as e:          # a family still being written
        if e.name != f"{__name__}.{_family}":
            raise

__all__ = ["OPS", "Attrs", "Inferred", "NoAttrs", "OpDef", "op", "FAMILIES"]
