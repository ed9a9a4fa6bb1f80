"""specc's NumPy runtime: run, differentiate and train compiled graphs; run ONNX exports.

Heavy or optional pieces (onnxruntime, training) load on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .memory import tune_allocator
from .model import Model, NonFiniteError, StateDictError
from .tensor import Tensor

_LAZY = {
    "OnnxSession": ("runtime.onnx_session", "OnnxSession"),
    "fit": ("runtime.train", "fit"),
    "save": ("runtime.checkpoint", "save"),
    "load": ("runtime.checkpoint", "load"),
    "optim": ("runtime.optim", None),
    "train": ("runtime.train", None),          # runtime.train.evaluate, as the docs write it
    "transfer": ("runtime.transfer", None),    # runtime.transfer.init_from
}

tune_allocator()

__all__ = ["Model", "Tensor", "StateDictError", "NonFiniteError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
