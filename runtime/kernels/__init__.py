"""NumPy kernels, one module per op family. Importing this package registers them all."""
from compiler.catalogue import import_families

from .registry import KERNELS, Ctx, kernel, unbroadcast

import_families(__name__)

__all__ = ["KERNELS", "Ctx", "kernel", "unbroadcast"]
