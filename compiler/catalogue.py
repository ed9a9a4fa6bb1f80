"""The operator catalogue of spec language v1, by family, derived from the op records.

FAMILIES is the one list kept here: the modules compiler/ops/<family>.py (the records) and
runtime/kernels/<family>.py (the NumPy kernels), in the order docs/ops.md shows them. CATALOGUE
({family: op names in declaration order}) and ALL_OPS are read off compiler.ops.OPS on first use.
"""
from __future__ import annotations

from typing import Any

FAMILIES: tuple[str, ...] = ("tensor", "dense", "activation", "convolution", "normalisation", "sequence",
                             "attention", "graph", "generative", "similarity", "loss")


def import_families(package: str, exclude: tuple[str, ...] = ()) -> None:
    """Import `<package>.<family>` for every family, registering its ops or kernels."""
    from importlib import import_module
    for family in FAMILIES:
        if family not in exclude:
            import_module(f"{package}.{family}")


def catalogue() -> dict[str, tuple[str, ...]]:
    """{family: its ops, in declaration order}, from the records."""
    from .ops import OPS
    return {f: tuple(n for n, d in OPS.items() if d.family == f) for f in FAMILIES}


def __getattr__(name: str) -> Any:            # CATALOGUE and ALL_OPS, computed once the records are loaded
    if name == "CATALOGUE":
        value: Any = catalogue()
    elif name == "ALL_OPS":
        value = tuple(n for ops in catalogue().values() for n in ops)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
