"""torch, torch.nn.functional and numpy as names imported on first use.

The op records name them in their lowerings and PyTorch references, which only run in `specc compile`, the
runtime or the tests; `specc check` imports the records and must not import numpy or torch.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


class _Lazy:
    """A module imported on first attribute access: the records' references name torch without importing it."""

    def __init__(self, module: str):
        self._name, self._module = module, None

    def __getattr__(self, key: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, key)


torch: Any = _Lazy("torch")
F: Any = _Lazy("torch.nn.functional")
np: Any = _Lazy("numpy")              # lowerings build constants with NumPy


def torch_function(dotted: str) -> Callable:
    """"F.relu" / "torch.sigmoid" as the function itself (imports torch)."""
    head, _, rest = dotted.partition(".")
    obj: Any = {"F": F, "torch": torch}[head]
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def torch_kwargs(attrs: Any, rename: dict[str, str | None]) -> dict[str, Any]:
    """The attributes as the torch function's keyword arguments (renamed, or dropped where mapped to None)."""
    out = {}
    for k in type(attrs).model_fields:
        key = rename.get(k, k)
        if key is not None:
            out[key] = getattr(attrs, k)
    return out
