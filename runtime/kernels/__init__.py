"""NumPy kernels, one module per op family. Importing this package registers them all."""
from importlib import import_module

from .registry import KERNELS, Ctx, kernel, unbroadcast

FAMILIES = ("tensor", "dense", "activation", "convolution", "normalisation", "sequence",
            "attention", "graph", "generative", "similarity", "loss")

for _family in FAMILIES:
    try:
        import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as e:          # a family still being written
        if e.name != f"{__name__}.{_family}":
            raise

__all__ = ["KERNELS", "Ctx", "kernel", "unbroadcast"]
